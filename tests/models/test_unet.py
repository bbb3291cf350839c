"""U-Net: odd grids in 1-3 D, the pad-and-crop on the right points, periodic equivariance, gradients, the
resolution dependence its docstring states, one-line errors, and training through the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import band_limited, run_cli

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import build
from oplearn.models.unet import UNet


def shift_error(model, x, shifts):
    """Largest change of ``model`` under a periodic shift of its input by ``shifts`` points on the last axes."""
    dims = tuple(range(x.ndim - len(shifts), x.ndim))
    with torch.no_grad():
        return (model(torch.roll(x, shifts, dims)) - torch.roll(model(x), shifts, dims)).abs().max().item()


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("sizes", [(33,), (17, 13), (9, 7, 5)])
def test_odd_grids_in_every_dimension(sizes, padding_mode, norm):
    torch.manual_seed(0)
    model = build("unet", 3, 2, width=4, levels=2, norm=norm, padding_mode=padding_mode, dim=len(sizes))
    out = model(torch.randn(2, 3, *sizes))
    assert out.shape == (2, 2, *sizes) and torch.isfinite(out).all()


def test_odd_grids_are_padded_at_the_end_and_cropped_back():
    """With zeros, a 29 x 27 input gives exactly the 32 x 32 zero-padded input's output on its own points;
    a pad at the start, or a crop from the wrong side, would shift every value."""
    torch.manual_seed(0)
    model = UNet(1, 1, width=4, levels=3, norm="none").double().eval()
    x = torch.randn(2, 1, 29, 27, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(F.pad(x, (0, 5, 0, 3)))[..., :29, :27], rtol=0, atol=1e-14)
        assert (model(x)[..., :28, :] - model(F.pad(x, (0, 5, 1, 2)))[..., 1:29, :27]).abs().max() > 1e-3


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_circular_padding_makes_the_model_commute_with_shifts(norm):
    torch.manual_seed(0)
    model = UNet(2, 1, width=4, levels=2, norm=norm, padding_mode="circular").double()
    x = torch.randn(3, 2, 16, 24, dtype=torch.float64)
    assert shift_error(model, x, (4, -8)) < 1e-12  # shifts by 2**levels
    assert shift_error(model, x, (2, 0)) > 1e-3  # the max pooling windows move
    assert shift_error(UNet(2, 1, width=4, levels=2, norm=norm, padding_mode="zeros").double(), x, (4, -8)) > 1e-3


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    model = UNet(1, 1, width=2, levels=1, norm="group", activation="tanh", padding_mode="reflect").double()
    x = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)  # odd: through the pad and the crop
    assert torch.autograd.gradcheck(model, (x,))
    model(x.detach()).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())


def test_stencils_are_in_grid_units_so_the_model_is_not_resolution_invariant():
    torch.manual_seed(0)
    model = UNet(1, 1, width=4, levels=2, padding_mode="circular").double()
    coefficients = [((1, 0), 1.0, 0.3), ((0, 2), 0.5, 1.0), ((1, 1), 0.7, 2.0)]
    with torch.no_grad():
        coarse = model(band_limited(16, 2, coefficients)[None, None])
        fine = model(band_limited(32, 2, coefficients)[None, None])[..., ::2, ::2]
    assert (fine - coarse).norm() / coarse.norm() > 0.05


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown norm 'layer'; choose one of: group, batch, none"):
        build("unet", 1, 1, norm="layer")
    with pytest.raises(ConfigError, match="unknown padding_mode 'periodic'"):
        build("unet", 1, 1, padding_mode="periodic")
    with pytest.raises(ConfigError, match="dim must be 1, 2 or 3"):
        build("unet", 1, 1, dim=0)
    with pytest.raises(ShapeError, match=r"UNet expects \(batch, 1, 2 spatial axes\)"):
        build("unet", 1, 1)(torch.randn(2, 1, 16, 16, 16))
    with pytest.raises(ShapeError, match=r"at least 16 points on every axis, got a grid \(17, 9\); lower levels"):
        build("unet", 1, 1, levels=4)(torch.randn(2, 1, 17, 9))


def test_trains_through_the_cli(tmp_path, capsys):
    data = tmp_path / "darcy.h5"
    status, _, err = run_cli(capsys, "generate", "darcy", "--n", 24, "--resolution", 17, "--out", data, "--workers", 1)
    assert status == 0, err
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(data)}, "test": {"path": str(data)}},
              "model": {"name": "unet", "width": 8, "levels": 2},
              "train": {"epochs": 6, "batch_size": 6, "lr": 0.01}}
    path = tmp_path / "unet.yaml"
    path.write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert status == 0, err
    errors = [json.loads(line)["test_rel_l2"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(errors) == 6 and errors[-1] < 0.6 * errors[0], errors
