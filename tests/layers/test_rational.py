import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from oplearn.layers import KANLinear
from oplearn.layers.rational import (GroupRationalFunction, group_rational, rational_backward_torch,
                                     rational_forward_torch, rational_reference, silu_fit)


def random_problem(shape=(5, 3, 8), groups=4, order=4, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    x = torch.randn(*shape, dtype=dtype) * 1.5
    numerator = torch.randn(groups, order + 1, dtype=dtype)
    denominator = torch.randn(groups, order - 1, dtype=dtype)  # Q changes sign on the data
    return x, numerator, denominator


def test_forward_equals_the_formula_element_by_element():
    x, numerator, denominator = random_problem(shape=(3, 8))
    y = group_rational(x, numerator, denominator)
    for n in range(3):
        for c in range(8):
            g, v = c // 2, float(x[n, c])
            p = sum(float(a) * v**j for j, a in enumerate(numerator[g]))
            q = sum(float(b) * v ** (j + 1) for j, b in enumerate(denominator[g]))
            assert float(y[n, c]) == pytest.approx(p / (1 + abs(q)), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(y, rational_reference(x, numerator, denominator))


@pytest.mark.parametrize("block_elements", [8, 13])  # many blocks; blocks not dividing the rows
def test_forward_in_row_blocks_equals_one_block(block_elements):
    x, numerator, denominator = random_problem()
    torch.testing.assert_close(rational_forward_torch(x, numerator, denominator, block_elements=block_elements),
                               rational_reference(x, numerator, denominator), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_elements", [1 << 20, 8, 13])  # one block; many; blocks not dividing the rows
def test_custom_backward_equals_autograd_of_the_plain_formula(block_elements):
    x, numerator, denominator = random_problem()
    grad_output = torch.randn_like(x)
    leaves = [t.clone().requires_grad_() for t in (x, numerator, denominator)]
    expected = torch.autograd.grad(rational_reference(*leaves), leaves, grad_output)
    out = rational_forward_torch(x, numerator, denominator)
    got = rational_backward_torch(grad_output, x, out, numerator, denominator, block_elements=block_elements)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10)
    xg = x.unflatten(-1, (4, -1))
    q = sum(denominator[:, j, None] * xg ** (j + 1) for j in range(denominator.shape[1]))
    assert (q > 0).any() and (q < 0).any()  # both branches of |Q| are exercised


@pytest.mark.parametrize("order", [1, 2, 6])  # no denominator; a linear one; a high degree
def test_custom_backward_at_other_orders(order):
    x, numerator, denominator = random_problem(order=order, seed=order)
    leaves = [t.clone().requires_grad_() for t in (x, numerator, denominator)]
    assert torch.autograd.gradcheck(GroupRationalFunction.apply, leaves)
    grad_output = torch.randn_like(x)
    expected = torch.autograd.grad(rational_reference(*leaves), leaves[:2], grad_output)
    got = torch.autograd.grad(group_rational(*leaves), leaves[:2], grad_output)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10)


def test_autograd_function_passes_gradcheck_and_matches_in_float32():
    x, numerator, denominator = random_problem(shape=(4, 6), groups=3, order=3)
    inputs = tuple(t.clone().requires_grad_() for t in (x, numerator, denominator))
    assert torch.autograd.gradcheck(GroupRationalFunction.apply, inputs)
    x32, n32, d32 = (t.float().requires_grad_() for t in (x, numerator, denominator))
    group_rational(x32, n32, d32).square().sum().backward()
    leaves = [t.clone().requires_grad_() for t in (x, numerator, denominator)]
    rational_reference(*leaves).square().sum().backward()
    for got, expected in zip((x32, n32, d32), leaves):
        torch.testing.assert_close(got.grad.double(), expected.grad, rtol=1e-4, atol=1e-4)


def test_safe_denominator_has_no_poles_and_order_one_is_affine():
    x = torch.linspace(-50, 50, 2001, dtype=torch.float64)[:, None]
    numerator = torch.tensor([[0.1, 1.0, -0.5]], dtype=torch.float64)
    denominator = torch.tensor([[-1.0]], dtype=torch.float64)  # 1 + Q would vanish at x = 1
    y = group_rational(x, numerator, denominator)
    p = 0.1 + x - 0.5 * x**2
    assert torch.isfinite(y).all() and (y.abs() <= p.abs() + 1e-12).all()
    affine = group_rational(x, torch.tensor([[0.3, 2.0]], dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64))
    torch.testing.assert_close(affine, 0.3 + 2 * x)


def test_rational_layer_starts_as_linear_after_silu():
    numerator, denominator = silu_fit(5)
    x = torch.linspace(-4, 4, 1001, dtype=torch.float64)
    y = rational_reference(x[:, None], torch.tensor([numerator]), torch.tensor([denominator]))[:, 0]
    assert (y - torch.nn.functional.silu(x)).abs().max() < 2e-5
    torch.manual_seed(0)
    layer = KANLinear(16, 5, basis="rational")
    assert layer.basis.groups == 8 and layer.base_weight is None
    assert sum(p.numel() for p in layer.parameters()) == 16 * 5 + 5 + 8 * (6 + 4)
    z = torch.rand(7, 16) * 8 - 4
    linear = torch.nn.functional.linear(torch.nn.functional.silu(z), layer.coefficients[..., 0], layer.bias)
    torch.testing.assert_close(layer(z), linear, atol=1e-4, rtol=0)
    assert KANLinear(6, 2, basis="rational").basis.groups == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_the_cpu_path():
    x, numerator, denominator = random_problem(shape=(64, 256), groups=8, order=5, dtype=torch.float32)
    leaves_cpu = [t.clone().requires_grad_() for t in (x, numerator, denominator)]
    leaves_gpu = [t.cuda().requires_grad_() for t in (x, numerator, denominator)]
    y_cpu, y_gpu = group_rational(*leaves_cpu), group_rational(*leaves_gpu)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(x)
    y_cpu.backward(grad)
    y_gpu.backward(grad.cuda())
    for got, expected in zip(leaves_gpu, leaves_cpu):
        torch.testing.assert_close(got.grad.cpu(), expected.grad, rtol=1e-3, atol=1e-3)


TRITON_CHECK = """
import torch
from oplearn.layers.rational import rational_reference
from oplearn.layers.rational_triton import rational_backward, rational_forward
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
for shape, groups, order in [((37, 24), 4, 5), ((5, 3, 16), 8, 3), ((130, 48), 3, 5), ((4, 8), 2, 1)]:
    x, grad = torch.randn(*shape) * 1.5, torch.randn(*shape)
    numerator, denominator = torch.randn(groups, order + 1), torch.randn(groups, order - 1)
    leaves = [t.double().requires_grad_() for t in (x, numerator, denominator)]
    expected = rational_reference(*leaves)
    wanted = torch.autograd.grad(expected, leaves, grad.double())
    on = lambda *ts: [t.to(device) for t in ts]
    torch.testing.assert_close(rational_forward(*on(x, numerator, denominator)).cpu().double(), expected,
                               rtol=1e-4, atol=1e-4)
    for got, want in zip(rational_backward(*on(grad, x, numerator, denominator)), wanted):
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-5 * (1 + want.norm().item()))
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")
def test_triton_kernels_match_the_formula():
    """On CUDA the compiled kernels; without a GPU, Triton's interpreter runs the same kernels on CPU."""
    env = dict(os.environ, TRITON_INTERPRET="0" if torch.cuda.is_available() else "1")
    result = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
