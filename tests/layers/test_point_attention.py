"""Point attentions against their formulas written out, with padding; chunked sums exact and smaller."""

import math

import pytest
import torch

from oplearn.layers.point_attention import (LinearAttention, PhysicsAttention, map_over_points, masked_mean,
                                            merge_heads, split_heads, sum_over_points)

B, N, WIDTH, HEADS = 2, 9, 6, 2


def example(seed=0, n=N):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, WIDTH, generator=generator, dtype=torch.float64)
    coords = torch.rand(B, n, 2, generator=generator, dtype=torch.float64)
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[1, n - 3:] = False
    return x, coords, mask


def heads(linear, x):
    return split_heads(linear(x), HEADS)


def layer_norm(t, norm):
    return torch.nn.functional.layer_norm(t, t.shape[-1:]) * norm.weight + norm.bias


def test_masked_mean_and_chunked_sums_leave_padding_out():
    x, _, mask = example()
    doubled = map_over_points(lambda part, t: 2 * t, [x], 4)
    torch.testing.assert_close(doubled, 2 * x, rtol=0, atol=0)
    x[1, -3:] = float("nan")
    torch.testing.assert_close(masked_mean(x, mask)[1], x[1, :-3].mean(0), rtol=0, atol=1e-15)
    square_sums = [sum_over_points(lambda part, t, keep: (torch.where(keep[..., None], t, 0).pow(2).sum(1),), [x],
                                   mask, chunk)[0] for chunk in (None, 2, 4)]
    for chunked in square_sums[1:]:
        torch.testing.assert_close(chunked, square_sums[0], rtol=1e-15, atol=0)
    assert torch.isfinite(square_sums[0]).all()


def test_bf16_chunks_are_summed_in_float32():
    ones = torch.ones(1, 4096, 1, dtype=torch.bfloat16)
    total = sum_over_points(lambda part, t, keep: (t.sum(1),), [ones], None, 16)[0]
    assert total.dtype == torch.float32 and total.item() == 4096  # bf16 running sums would stall at 256


@pytest.mark.parametrize("coordinate_dim", [0, 2])
def test_galerkin_attention_is_q_times_normalized_k_transpose_v_over_n(coordinate_dim):
    torch.manual_seed(0)
    attention = LinearAttention(WIDTH, HEADS, "galerkin", coordinate_dim).double()
    x, coords, mask = example()
    out = attention(x, x, coords, mask, chunk=4)
    for b in range(B):
        real = mask[b]
        xb, cb = x[b:b + 1, real], coords[b:b + 1, real]
        q = heads(attention.query, xb)
        k = layer_norm(heads(attention.keys[0], xb), attention.norms[0])
        v = layer_norm(heads(attention.values[0], xb), attention.norms[1])
        if coordinate_dim:
            q, k, v = (torch.cat([t, cb[:, None].expand(-1, HEADS, -1, -1)], -1) for t in (q, k, v))
        z = q @ (k.transpose(-1, -2) @ v) / real.sum()
        torch.testing.assert_close(out[b:b + 1, real], attention.output(merge_heads(z)), rtol=0, atol=1e-13)


def test_fourier_attention_is_the_quadratic_kernel_integral():
    torch.manual_seed(0)
    attention = LinearAttention(WIDTH, HEADS, "fourier").double()
    x, coords, mask = example()
    out = attention(x, x, coords, mask)
    for b in range(B):
        xb = x[b:b + 1, mask[b]]
        q = layer_norm(heads(attention.query, xb), attention.norms[0])
        k = layer_norm(heads(attention.keys[0], xb), attention.norms[1])
        kernel = q @ k.transpose(-1, -2) / mask[b].sum()                      # (1, H, n, n): the N^2 order
        expected = attention.output(merge_heads(kernel @ heads(attention.values[0], xb)))
        torch.testing.assert_close(out[b:b + 1, mask[b]], expected, rtol=0, atol=1e-13)


def test_normalized_attention_averages_values_with_positive_weights_summing_to_one():
    torch.manual_seed(0)
    attention = LinearAttention(WIDTH, HEADS, "normalized", n_sources=2).double()
    x, coords, mask = example()
    y = torch.randn_like(x)
    out = attention(x, [x, y], coords, mask, chunk=3)
    for b in range(B):
        real = mask[b]
        q = heads(attention.query, x[b:b + 1, real]).softmax(-1)
        z = 0
        for source, keys_in in enumerate((x, y)):
            k = heads(attention.keys[source], keys_in[b:b + 1, real]).softmax(-1)
            weights = q @ k.transpose(-1, -2)
            weights = weights / weights.sum(-1, keepdim=True)                  # rows: a probability each
            z = z + weights @ heads(attention.values[source], keys_in[b:b + 1, real])
        torch.testing.assert_close(out[b:b + 1, real], attention.output(merge_heads(z)), rtol=0, atol=1e-13)


@pytest.mark.parametrize("adaptive", [False, True])
def test_physics_attention_is_slice_attend_deslice(adaptive):
    torch.manual_seed(0)
    attention = PhysicsAttention(WIDTH, HEADS, n_slices=4, adaptive_temperature=adaptive).double().eval()
    features, slice_in, mask = example(1)[0], example(2)[0], example()[2]
    out = attention(features, slice_in, mask, chunk=4)
    for b in range(B):
        f, s = split_heads(features[b:b + 1, mask[b]], HEADS), split_heads(slice_in[b:b + 1, mask[b]], HEADS)
        temperature = attention.temperature
        if adaptive:
            temperature = (temperature + attention.temperature_shift(s)).clamp_min(0.01)
        w = (attention.slice_logits(s) / temperature).softmax(-1)               # (1, H, n, G), rows sum to 1
        tokens = (w.transpose(-1, -2) @ f) / (w.sum(2)[..., None] + attention.eps)
        q, k, v = attention.query(tokens), attention.key(tokens), attention.value(tokens)
        tokens = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        expected = attention.output(merge_heads(w @ tokens))
        torch.testing.assert_close(out[b:b + 1, mask[b]], expected, rtol=0, atol=1e-13)


def saved_bytes(function):
    """Bytes of the storages autograd keeps for the backward pass of ``function()`` (views counted once)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        function()
    return sum(storages.values())


ATTENTIONS = {"physics": lambda: PhysicsAttention(16, 4, n_slices=64),
              "galerkin": lambda: LinearAttention(16, 4, "galerkin", coordinate_dim=2),
              "normalized": lambda: LinearAttention(16, 4, "normalized")}


def call(name, attention, features, coords, chunk):
    if name == "physics":
        return attention(features, features, None, chunk)
    return attention(features, features, coords, None, chunk)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_chunks_bound_what_the_backward_pass_keeps(name):
    """Per point, unchunked attention keeps projections (and H x G slice weights) for the backward pass;
    chunked, only the point's input and coordinates (chunks are recomputed): the rest does not grow with N."""
    torch.manual_seed(0)
    attention = ATTENTIONS[name]()
    per_point = {}
    for chunk in (None, 128):
        kept = []
        for n in (2048, 4096):
            features, coords = torch.randn(1, n, 16, requires_grad=True), torch.rand(1, n, 2)
            kept.append(saved_bytes(lambda: call(name, attention, features, coords, chunk)))
        per_point[chunk] = (kept[1] - kept[0]) / 2048
    assert per_point[128] == 4 * (16 + (0 if name == "physics" else 2))  # float32 input (and coordinates)
    assert per_point[None] > 3 * per_point[128], per_point
