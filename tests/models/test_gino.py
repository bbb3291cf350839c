"""GINO: order-free in its input points, blind to padding, predicts at queries, trains on clouds and grids."""

import numpy as np
import pytest
import torch

from helpers import run_cli
from oplearn.errors import ConfigError
from oplearn.data.sources import open_data
from oplearn.models import build
from oplearn.train.recipes import load_run
from test_gno import (DOMAIN, DOMAIN_3D, assert_gradcheck, assert_padding_changes_nothing,
                      assert_permutation_equivariant, cloud, train_from_cli, write_cloud_file)


def tiny_gino(**hyper):
    torch.manual_seed(0)
    options = {"latent_grid": (8, 8), "modes": (3, 3), "width": 6, "fno_layers": 2, "radius": 0.2,
               "kernel_width": 8, "projection_channels": 8, "domain": DOMAIN, **hyper}
    return build("gino", 1, 1, **options).double()


def test_permuting_the_input_points_permutes_the_output():
    assert_permutation_equivariant(tiny_gino())
    assert_permutation_equivariant(tiny_gino(padding=0.25))


def test_padding_with_garbage_changes_nothing_at_real_points():
    assert_padding_changes_nothing(tiny_gino())


def test_in_three_dimensions_too():
    model = tiny_gino(latent_grid=(5, 6, 5), modes=(2, 2, 2), radius=0.3, domain=DOMAIN_3D)
    assert_permutation_equivariant(model, dim=3)
    assert_padding_changes_nothing(model, dim=3)


@pytest.mark.parametrize("domain", [DOMAIN, None])
def test_queries_at_the_input_points_give_the_output_there(domain):
    """Also without a domain: queries are mapped with the input points' box, not their own."""
    model = tiny_gino(domain=domain)
    inputs, coords = cloud(2, 40, seed=1)
    with torch.no_grad():
        at_points = model(inputs, coords=coords)
        torch.testing.assert_close(model(inputs, coords=coords, queries=coords[:, :, :15]), at_points[..., :15],
                                   rtol=1e-12, atol=1e-12)
        shared = coords[0, :, :10]  # (d, Q) shared by the batch
        torch.testing.assert_close(model(inputs, coords=coords, queries=shared)[0], at_points[0, :, :10],
                                   rtol=1e-12, atol=1e-12)


def test_chunked_edges_change_nothing():
    inputs, coords = cloud(2, 60, seed=6)
    with torch.no_grad():
        whole = tiny_gino()(inputs, coords=coords)
    torch.testing.assert_close(tiny_gino(chunk_edges=11)(inputs, coords=coords), whole, rtol=1e-12, atol=1e-12)


def test_gradcheck_tiny():
    assert_gradcheck(tiny_gino(latent_grid=(5, 5), modes=(2, 2), width=3, kernel_width=4, projection_channels=4,
                               radius=0.3))


def test_a_radius_that_misses_latent_nodes_is_refused():
    with pytest.raises(ConfigError, match="must be at least 0.1179"):
        build("gino", 1, 1, latent_grid=[7, 7], modes=[2, 2], radius=0.1)
    with pytest.raises(ConfigError, match="modes lists 1 to 3"):
        build("gino", 1, 1, latent_grid=[7, 7], modes=[2], radius=0.3)


def test_gino_trains_on_a_point_cloud_file_from_the_cli(tmp_path, capsys):
    train = write_cloud_file(tmp_path / "train.h5", 24, seed=1)
    test = write_cloud_file(tmp_path / "test.h5", 6, seed=2)
    metrics, results, _ = train_from_cli(capsys, tmp_path, train, test,
                                         {"name": "gino", "latent_grid": [12, 12], "modes": [4, 4], "width": 12,
                                          "fno_layers": 2, "radius": 0.15, "kernel_width": 16,
                                          "projection_channels": 32})
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
    assert np.isfinite(results["test"]["rel_l2"]) and results["test"]["rel_l2"] < 0.5


def test_gino_trains_on_a_grid_darcy_file_from_the_cli(tmp_path, capsys):
    for split, seed in (("train", 1), ("test", 2)):
        status, _, err = run_cli(capsys, "generate", "darcy", "--n", 24 if split == "train" else 6,
                                 "--resolution", 17, "--out", tmp_path / f"{split}.h5", "--seed", seed, "--workers", 1)
        assert status == 0, err
    metrics, results, saved = train_from_cli(capsys, tmp_path, str(tmp_path / "train.h5"), str(tmp_path / "test.h5"),
                                             {"name": "gino", "latent_grid": [9, 9], "modes": [3, 3], "width": 8,
                                              "fno_layers": 2, "radius": 0.1, "kernel_width": 8,
                                              "projection_channels": 16}, epochs=15, lr=0.01)
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]  # about 0.64 -> 0.18
    assert np.isfinite(results["test"]["rel_l2"]) and results["test"]["rel_l2"] < 0.3
    assert saved["model"]["domain"] == [[0.0, 0.0], [1.0, 1.0]]
    # oplearn eval --queries: at the grid's own nodes the predictions are the grid predictions
    nodes = np.stack(np.meshgrid(np.linspace(0, 1, 17), np.linspace(0, 1, 17), indexing="ij"), -1).reshape(-1, 2)
    np.save(tmp_path / "nodes.npy", nodes)
    status, _, err = run_cli(capsys, "eval", tmp_path / "run", "--queries", tmp_path / "nodes.npy")
    assert status == 0, err
    at_nodes = np.load(tmp_path / "run" / "eval" / "queries.npz")["predictions"]
    _, model, task = load_run(tmp_path / "run", "cpu")
    batch = open_data(tmp_path / "test.h5").batch(range(at_nodes.shape[0]))
    with torch.no_grad():
        on_grid = task.predict(model, batch.with_targets(None)).reshape(*at_nodes.shape)
    np.testing.assert_allclose(at_nodes, on_grid.numpy(), rtol=1e-5, atol=1e-6)
