"""MgNO: shapes on odd grids in 1-3 D, no lifting or projection, periodic equivariance, gradients, the
resolution dependence its docstring states, one-line errors, and training through the CLI."""

import json

import pytest
import torch
import yaml
from helpers import band_limited, run_cli

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import build
from oplearn.models.mgno import MgNO

SMALL = {"width": 4, "n_layers": 2, "levels": 3}


def shift_error(model, x, shifts):
    """Largest change of ``model`` under a periodic shift of its input by ``shifts`` points on the last axes."""
    dims = tuple(range(x.ndim - len(shifts), x.ndim))
    with torch.no_grad():
        return (model(torch.roll(x, shifts, dims)) - torch.roll(model(x), shifts, dims)).abs().max().item()


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("sizes", [(33, 29), (17, 17), (33,), (9, 11, 8)])
def test_odd_grids_in_every_dimension(sizes, padding_mode):
    torch.manual_seed(0)
    model = build("mgno", 3, 2, **SMALL, dim=len(sizes), padding_mode=padding_mode)
    out = model(torch.randn(2, 3, *sizes))
    assert out.shape == (2, 2, *sizes) and torch.isfinite(out).all()
    # the inputs enter the first V-cycle directly, the last one gives the outputs: no lifting, no projection
    assert [type(m).__name__ for m in model.children()] == ["ModuleList"]
    assert model.layers[0].cycle.in_channels == 3 and model.layers[-1].cycle.out_channels == 2


def test_circular_padding_makes_the_model_commute_with_shifts():
    torch.manual_seed(0)
    model = MgNO(2, 1, **SMALL, padding_mode="circular").double()
    x = torch.randn(2, 2, 16, 24, dtype=torch.float64)
    assert shift_error(model, x, (4, 8)) < 1e-12  # shifts by the coarsest spacing, 2**(levels - 1)
    assert shift_error(MgNO(2, 1, **SMALL, padding_mode="zeros").double(), x, (4, 8)) > 1e-3


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    model = MgNO(1, 1, width=2, n_layers=2, levels=2, activation="tanh").double()
    for layer in model.layers:  # nonzero biases, so every parameter matters
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 1, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    loss = model(x.detach()).square().sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())


def test_stencils_are_in_grid_units_so_the_model_is_not_resolution_invariant():
    """The docstring's statement: the same periodic function on 16 and 32 points gives different outputs
    where the grids meet (a resolution-invariant operator would agree there to round-off)."""
    torch.manual_seed(0)
    model = MgNO(1, 1, **SMALL, padding_mode="circular").double()
    coefficients = [((1, 0), 1.0, 0.3), ((0, 2), 0.5, 1.0), ((1, 1), 0.7, 2.0)]
    with torch.no_grad():
        coarse = model(band_limited(16, 2, coefficients)[None, None])
        fine = model(band_limited(32, 2, coefficients)[None, None])[..., ::2, ::2]
    assert (fine - coarse).norm() / coarse.norm() > 0.05


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown padding_mode 'dirichlet'"):
        build("mgno", 1, 1, padding_mode="dirichlet")
    with pytest.raises(ConfigError, match="dim must be 1, 2 or 3"):
        build("mgno", 1, 1, dim=4)
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        build("mgno", 1, 1, modes=[4, 4])
    with pytest.raises(ShapeError, match=r"MgNO expects \(batch, 1, 2 spatial axes\)"):
        build("mgno", 1, 1)(torch.randn(2, 1, 16))
    with pytest.raises(ShapeError, match="lower levels"):
        build("mgno", 1, 1, levels=6)(torch.randn(2, 1, 17, 17))


def test_trains_through_the_cli(tmp_path, capsys):
    data = tmp_path / "darcy.h5"
    status, _, err = run_cli(capsys, "generate", "darcy", "--n", 24, "--resolution", 17, "--out", data, "--workers", 1)
    assert status == 0, err
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(data)}, "test": {"path": str(data)}},
              "model": {"name": "mgno", "width": 8, "n_layers": 2, "levels": 3},
              "train": {"epochs": 8, "batch_size": 6, "lr": 0.01}}
    path = tmp_path / "mgno.yaml"
    path.write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert status == 0, err
    errors = [json.loads(line)["test_rel_l2"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(errors) == 8 and errors[-1] < 0.6 * errors[0], errors  # measured: 0.53 -> 0.21
