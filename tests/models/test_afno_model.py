"""AFNO model: shapes across patch grids and resolutions, padding, shift symmetry, training."""

import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import build
from oplearn.models.afno import AFNO


@pytest.mark.parametrize("patch_size, sizes", [(1, (8, 6)), (2, (16, 16)), (4, (32, 24)), (4, (16, 48)), (8, (32, 32))])
@pytest.mark.parametrize("grid", [True, False])
def test_output_shape_across_patch_grids(patch_size, sizes, grid):
    model = AFNO(2, 3, patch_size=patch_size, width=8, n_layers=2, n_blocks=2, grid=grid)
    assert model(torch.randn(2, 2, *sizes)).shape == (2, 3, *sizes)


def test_one_model_runs_at_several_resolutions():
    torch.manual_seed(0)
    model = AFNO(1, 1, patch_size=4, width=8, n_layers=2, n_blocks=2, hard_threshold_fraction=0.5)
    for sizes in [(16, 16), (32, 32), (24, 40), (4, 4)]:
        out = model(torch.randn(1, 1, *sizes))
        assert out.shape == (1, 1, *sizes) and torch.isfinite(out).all()


def test_grid_not_divisible_by_patch_raises_or_pads():
    torch.manual_seed(0)
    with pytest.raises(ShapeError, match="pad_to_patch=True"):
        AFNO(1, 1, patch_size=4, width=8, n_layers=1, n_blocks=2)(torch.randn(1, 1, 30, 18))
    x = torch.randn(1, 1, 30, 18)
    assert AFNO(1, 1, patch_size=4, width=8, n_layers=1, n_blocks=2, pad_to_patch=True)(x).shape == (1, 1, 30, 18)
    # The padding is zeros at the end: the output is the zero-padded input's output, cropped
    # (checked without grid coordinates, which span the unpadded grid).
    model = AFNO(1, 1, patch_size=4, width=8, n_layers=1, n_blocks=2, grid=False, pad_to_patch=True)
    full = model(torch.nn.functional.pad(x, (0, 2, 0, 2)))
    torch.testing.assert_close(model(x), full[..., :30, :18], rtol=0, atol=1e-6)


def test_model_commutes_with_shifts_by_whole_patches_in_float64():
    """Every part is per token or the (modulus) mixer, so shifting by multiples of p commutes."""
    torch.manual_seed(1)
    model = AFNO(2, 2, patch_size=2, width=8, n_layers=2, n_blocks=2, sparsity=0.1,
                 hard_threshold_fraction=0.75, grid=False).double()
    x = torch.randn(2, 2, 16, 12, dtype=torch.float64)
    y = model(x)
    for shift in [(2, 0), (0, 4), (6, -2)]:
        moved = model(torch.roll(x, shift, dims=(2, 3)))
        torch.testing.assert_close(moved, torch.roll(y, shift, dims=(2, 3)), rtol=0, atol=1e-10)
    # A shift by less than a patch changes which pixels share a token: no symmetry there.
    moved = model(torch.roll(x, (1, 0), dims=(2, 3)))
    assert (moved - torch.roll(y, (1, 0), dims=(2, 3))).abs().max() > 1e-3


def test_registered_and_checked_by_name():
    model = build("afno", in_channels=1, out_channels=1, patch_size=2, width=8, n_layers=1, n_blocks=2)
    assert isinstance(model, AFNO)
    with pytest.raises(ConfigError, match="divisible by n_blocks"):
        build("afno", in_channels=1, out_channels=1, width=10, n_blocks=4)
    with pytest.raises(ConfigError, match="unknown activation"):
        build("afno", in_channels=1, out_channels=1, width=8, activation="swish")


def test_tiny_afno_learns_a_global_smoothing_operator():
    """Target: a shifted Helmholtz smoothing of the input, a global periodic convolution."""
    torch.manual_seed(0)
    n = 16
    k = torch.fft.fftfreq(n, 1 / n)
    symbol = 1 / (1 + 0.8 * (k[:, None] ** 2 + k[None, :] ** 2))

    def smooth(a):
        return torch.fft.ifft2(torch.fft.fft2(a) * symbol).real

    a = smooth(smooth(torch.randn(8, 1, n, n)))
    a = a / a.std()
    u = torch.roll(smooth(a), (2, 0), dims=(2, 3))
    model = AFNO(1, 1, patch_size=2, width=16, n_layers=2, n_blocks=2, grid=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def relative_error():
        with torch.no_grad():
            return ((model(a) - u).norm() / u.norm()).item()

    before = relative_error()
    for _ in range(40):
        optimizer.zero_grad()
        ((model(a) - u) ** 2).mean().backward()
        optimizer.step()
    after = relative_error()
    print(f"relative L2 before {before:.3f}, after {after:.3f}")
    assert after < 0.5 * before, (before, after)
