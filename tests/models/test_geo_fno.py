"""Geo-FNO: order-free in its points, blind to padding, identity deformation at start, trains on clouds and grids."""

import numpy as np
import pytest
import torch

from helpers import run_cli
from oplearn.errors import ConfigError
from oplearn.models import build
from test_gno import (DOMAIN, DOMAIN_3D, assert_gradcheck, assert_padding_changes_nothing,
                      assert_permutation_equivariant, cloud, train_from_cli, write_cloud_file)


def tiny_geo_fno(**hyper):
    torch.manual_seed(0)
    options = {"latent_grid": (8, 8), "modes": (3, 3), "width": 6, "n_layers": 2, "deformation_width": 8,
               "projection_channels": 8, "domain": DOMAIN, **hyper}
    model = build("geo_fno", 1, 1, **options).double()
    if model.deformation is not None:  # a deformation that is not the identity, so that it is tested too
        with torch.no_grad():
            model.deformation.net[-1].weight.normal_(0, 0.1)
    return model


def test_permuting_the_points_permutes_the_output():
    assert_permutation_equivariant(tiny_geo_fno())


def test_padding_with_garbage_changes_nothing_at_real_points():
    assert_padding_changes_nothing(tiny_geo_fno())


def test_in_three_dimensions_too():
    model = tiny_geo_fno(latent_grid=(6, 4, 5), modes=(2, 2, 2), domain=DOMAIN_3D)
    assert_permutation_equivariant(model, dim=3)
    assert_padding_changes_nothing(model, dim=3)


def test_chunked_point_sums_change_nothing():
    inputs, coords = cloud(2, 60, seed=6)
    with torch.no_grad():
        whole = tiny_geo_fno()(inputs, coords=coords)
        torch.testing.assert_close(tiny_geo_fno(chunk_points=7)(inputs, coords=coords), whole, rtol=1e-12, atol=1e-12)


def test_the_deformation_starts_at_the_identity_and_learns():
    torch.manual_seed(0)
    model = build("geo_fno", 1, 1, latent_grid=[8, 8], modes=[3, 3], width=6, n_layers=1, padding=0.5,
                  domain=DOMAIN).double()
    points = torch.rand(2, 2, 30, dtype=torch.float64)
    torch.testing.assert_close(model.latent_points(points), points / 1.5, rtol=0, atol=0)
    inputs, coords = cloud(2, 30, seed=2)
    model(inputs, coords=coords).square().sum().backward()
    assert model.deformation.net[-1].weight.grad.abs().max() > 0  # the points' places get gradients


def test_gradcheck_tiny():
    assert_gradcheck(tiny_geo_fno(latent_grid=(4, 4), modes=(2, 2), width=3, deformation_width=3,
                                  projection_channels=4, n_layers=1))


def test_a_latent_grid_too_coarse_for_the_modes_is_refused():
    with pytest.raises(ConfigError, match="at least 2 \\* modes"):
        build("geo_fno", 1, 1, modes=[4, 4], latent_grid=[7, 8])


def test_geo_fno_trains_on_a_point_cloud_file_from_the_cli(tmp_path, capsys):
    train = write_cloud_file(tmp_path / "train.h5", 24, seed=1)
    test = write_cloud_file(tmp_path / "test.h5", 6, seed=2)
    metrics, results, _ = train_from_cli(capsys, tmp_path, train, test,
                                         {"name": "geo_fno", "latent_grid": [12, 12], "modes": [4, 4], "width": 12,
                                          "n_layers": 2, "deformation_width": 16, "projection_channels": 32})
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
    assert np.isfinite(results["test"]["rel_l2"]) and results["test"]["rel_l2"] < 0.5


def test_geo_fno_trains_on_a_grid_darcy_file_from_the_cli(tmp_path, capsys):
    for split, seed, n in (("train", 1, 24), ("test", 2, 6)):
        status, _, err = run_cli(capsys, "generate", "darcy", "--n", n, "--resolution", 17, "--out",
                                 tmp_path / f"{split}.h5", "--seed", seed, "--workers", 1)
        assert status == 0, err
    metrics, results, _ = train_from_cli(capsys, tmp_path, str(tmp_path / "train.h5"), str(tmp_path / "test.h5"),
                                         {"name": "geo_fno", "latent_grid": [16, 16], "modes": [4, 4], "width": 8,
                                          "n_layers": 2, "deformation_width": 8, "projection_channels": 16},
                                         epochs=15, lr=0.01)
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]  # about 0.63 -> 0.15
    assert np.isfinite(results["test"]["rel_l2"]) and results["test"]["rel_l2"] < 0.3


def test_bf16_autocast_runs_the_point_sums_in_float32():
    """Complex bf16 does not exist: under autocast the non-uniform sums run in float32 and agree closely."""
    model = tiny_geo_fno().float()
    inputs, coords = (t.float() for t in cloud(2, 60, seed=8))
    reference = model(inputs, coords=coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(inputs, coords=coords)
        out.float().square().mean().backward()
    assert (out.float() - reference).abs().max() < 0.05 * reference.abs().max()
