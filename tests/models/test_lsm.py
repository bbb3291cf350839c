"""Latent Spectral Model: shapes on odd grids in 1-3 D, errors, autograd, training through the CLI."""

import json

import pytest
import torch
import yaml
from helpers import run_cli

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import build

TINY = {"width": 8, "levels": 2, "n_tokens": 3, "n_basis": 4, "patch_size": 4, "projection_channels": 16}


@pytest.mark.parametrize("sizes, hyper", [
    ((17, 17), {"levels": 3}),
    ((17, 23), {"patch_size": [3, 5]}),
    ((33,), {"dim": 1, "grid": False}),
    ((9, 7, 5), {"dim": 3, "width": 4, "patch_size": 2}),
    ((4, 5), {}),  # 2^levels points: the coarsest grid is 1 x 2
])
def test_shapes_on_odd_grids(sizes, hyper):
    torch.manual_seed(0)
    model = build("lsm", 2, 3, **{**TINY, **hyper})
    out = model(torch.randn(2, 2, *sizes))
    assert out.shape == (2, 3, *sizes) and torch.isfinite(out).all()


def test_every_scale_has_a_spectral_block_with_its_channels():
    model = build("lsm", 1, 1, **TINY)
    assert [block.tokens.shape for block in model.spectral_blocks] == [(3, 8), (3, 16), (3, 32)]
    assert [block.expansion.sin_weight.shape for block in model.spectral_blocks] == [(4, 8), (4, 16), (4, 32)]


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    model = build("lsm", 1, 1, width=2, levels=1, n_tokens=2, n_basis=2, patch_size=2, projection_channels=4).double()
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    name = "spectral_blocks.1.tokens"
    tokens = dict(model.named_parameters())[name].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: torch.func.functional_call(model, {name: t}, (x.detach(),)), (tokens,))


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="dim must be 1, 2 or 3, got 4"):
        build("lsm", 1, 1, dim=4)
    with pytest.raises(ConfigError, match=r"patch_size needs one positive number or 2 \(one per axis\), got \(4, 4, 4"):
        build("lsm", 1, 1, patch_size=[4, 4, 4])
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        build("lsm", 1, 1, modes=[4, 4])
    with pytest.raises(ShapeError, match=r"levels=2 needs at least 4 points per axis, got grid \(3, 9\)"):
        build("lsm", 1, 1, **TINY)(torch.randn(1, 1, 3, 9))
    with pytest.raises(ShapeError, match=r"LSM expects \(batch, 1, 2 spatial axes\)"):
        build("lsm", 1, 1, **TINY)(torch.randn(1, 1, 9))


def test_trains_through_the_cli_on_tiny_darcy(tmp_path, capsys):
    for name, n, seed in (("train", 24, 1), ("test", 8, 2)):
        status, _, err = run_cli(capsys, "generate", "darcy", "--n", n, "--resolution", 17, "--seed", seed,
                                 "--out", tmp_path / f"{name}.h5", "--workers", 1)
        assert status == 0, err
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(tmp_path / "train.h5")}, "test": {"path": str(tmp_path / "test.h5")}},
              "model": {"name": "lsm", **TINY},
              "train": {"epochs": 10, "batch_size": 6, "lr": 0.003}}
    (tmp_path / "lsm.yaml").write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", tmp_path / "lsm.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["test_rel_l2"] < 0.7 * metrics[0]["test_rel_l2"] and metrics[-1]["test_rel_l2"] < 0.5
