"""DomainPadding: the padded period of the training grid, kept on every grid."""

import json
from fractions import Fraction

import pytest
import torch
from safetensors.torch import save_file

from oplearn.errors import DataError
from oplearn.layers.padding import DomainPadding, fix_padded_periods, padding_points
from oplearn.layers.spectral import SpectralConv
from oplearn.models import build
from oplearn.train.checkpoint import Checkpoint, save_checkpoint


def period(n: int, pad: int) -> Fraction:
    return Fraction(n + pad, n - 1)


def test_unfixed_padding_rounds_each_grid_to_about_one_plus_padding():
    for n in (32, 64, 85, 128, 421):
        assert abs(float(period(n, padding_points(n, 0.1))) - 1.1) < 0.01
    assert padding_points(64, 0.0) == 0 and padding_points(64, 0.0, reference=85) == 0
    # ... which is not one period: 85 points realise 92/84, 421 points 462/420.
    assert period(85, padding_points(85, 0.1)) == Fraction(92, 84)
    assert period(421, padding_points(421, 0.1)) == Fraction(462, 420)


def test_fixed_padding_gives_refined_grids_the_training_period_exactly():
    padding = DomainPadding((0.1, 0.0))
    padding.fix_period((85, 85))
    for n in (85, 106, 211, 421, 1681):  # n - 1 a multiple of 21: the period 92/84 = 23/21 is reachable
        pad = padding.points((n, n))
        assert period(n, pad[0]) == Fraction(92, 84) and pad[1] == 0
    # Otherwise the nearest whole number of points: 141 points, 153.33 -> 153.
    assert padding.points((141, 141))[0] == 12


def smooth_bump(n: int) -> torch.Tensor:
    """A Gaussian at x = 0.5 that is zero to 1e-17 at both ends, so padding adds no jump: (1, 1, n)."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.exp(-((x - 0.5) / 0.08) ** 2)[None, None]


@pytest.mark.parametrize("fixed", [True, False])
def test_a_fourier_layer_is_resolution_invariant_only_with_the_training_period(fixed):
    # pad -> SpectralConv -> crop of a smooth, compactly supported field is a truncated Fourier
    # operator on the padded period: a coarse and a fine grid agree to rounding when the periods
    # agree, and differ by the stretch of the kernel when each grid rounds the period itself.
    torch.manual_seed(0)
    padding, conv = DomainPadding((0.1,)), SpectralConv(1, 1, (8,)).double()
    if fixed:
        padding.fix_period((85,))
    with torch.no_grad():
        coarse = padding.crop(conv(padding.pad(smooth_bump(85))), (85,))
        fine = padding.crop(conv(padding.pad(smooth_bump(421))), (421,))[..., ::5]
    difference = float((coarse - fine).norm() / coarse.norm())
    if fixed:
        assert difference < 1e-10
    else:
        assert difference > 1e-3


def test_the_fixed_period_is_saved_and_a_state_without_it_is_refused(tmp_path):
    model = build("fno", in_channels=1, out_channels=1, modes=(4, 4), width=4, padding=0.1)
    fix_padded_periods(model, (85, 85))
    save_checkpoint(tmp_path / "fixed.safetensors", model)
    loaded = build("fno", in_channels=1, out_channels=1, modes=(4, 4), width=4, padding=0.1)
    Checkpoint(tmp_path / "fixed.safetensors").restore(loaded)
    assert loaded.domain_padding.fixed and loaded.domain_padding.points((421, 421)) == [39, 39]
    # fixing again keeps the first training grid (a second stage at another grid must not move it)
    fix_padded_periods(loaded, (211, 211))
    assert loaded.domain_padding.points((421, 421)) == [39, 39]
    # A state from before the period was recorded does not load: a one-line error naming the tensor.
    old = {f"model.{k}": v for k, v in model.state_dict().items() if k != "domain_padding.reference"}
    save_file(old, str(tmp_path / "old.safetensors"), metadata={"oplearn": json.dumps({"state": {}})})
    fresh = build("fno", in_channels=1, out_channels=1, modes=(4, 4), width=4, padding=0.1)
    with pytest.raises(DataError, match="does not fit the model.*domain_padding.reference") as error:
        Checkpoint(tmp_path / "old.safetensors").restore(fresh)
    assert len(str(error.value).splitlines()) == 1
