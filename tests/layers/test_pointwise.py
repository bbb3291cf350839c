"""PointwiseLinear is the 1x1 convolution: same values, same gradients, same initial scale."""

import pytest
import torch
from torch import nn

from oplearn.errors import ShapeError
from oplearn.layers import PointwiseLinear

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@pytest.mark.parametrize("spatial", [(9,), (6, 5), (4, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_a_1x1_convolution_with_gradients(spatial, bias):
    torch.manual_seed(0)
    layer = PointwiseLinear(4, 3, bias=bias).double()
    conv = CONVS[len(spatial)](4, 3, kernel_size=1, bias=bias).double()
    with torch.no_grad():
        conv.weight.copy_(layer.weight.view(conv.weight.shape))
        if bias:
            conv.bias.copy_(layer.bias)
    x = torch.randn(2, 4, *spatial, dtype=torch.float64, requires_grad=True)
    out, expected = layer(x), conv(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, [x, layer.weight], g)
    theirs = torch.autograd.grad(expected, [x, conv.weight], g)
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1].view(3, 4))


def test_initialised_like_the_convolution():
    torch.manual_seed(1)
    layer = PointwiseLinear(64, 64)
    bound = 1 / 64 ** 0.5  # PyTorch's default for Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    assert layer.bias.abs().max() <= bound


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ShapeError, match=r"expects \(batch, 4, \*spatial\)"):
        PointwiseLinear(4, 3)(torch.randn(2, 5, 8))

