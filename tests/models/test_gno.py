"""GNO: permutation equivariant, blind to padding, chunking-invariant, differentiable, trains from the CLI.

Also holds the point-set helpers the GINO and Geo-FNO tests share.
"""

import json

import numpy as np
import pytest
import torch
import yaml

from helpers import run_cli
from oplearn.data.ragged import RaggedDatasetWriter
from oplearn.errors import ConfigError
from oplearn.layers.coordinates import grid_coordinates
from oplearn.models import build
from oplearn.train import fit
from oplearn.train.evaluation import evaluate_run

DOMAIN = [[0.0, -1.0], [2.0, 1.0]]  # the box the test clouds lie in: not the unit box
DOMAIN_3D = [[0.0, -1.0, -1.0], [2.0, 1.0, 1.0]]


def cloud(batch, n, seed, channels=1, dim=2):
    """``(inputs (B, C, n), coords (B, d, n))`` in float64, points in the DOMAIN (or DOMAIN_3D) box."""
    generator = torch.Generator().manual_seed(seed)
    low, high = (torch.tensor(side, dtype=torch.float64)[:, None] for side in (DOMAIN if dim == 2 else DOMAIN_3D))
    coords = low + (high - low) * torch.rand(batch, dim, n, generator=generator, dtype=torch.float64)
    inputs = torch.randn(batch, channels, n, generator=generator, dtype=torch.float64)
    return inputs, coords


def assert_permutation_equivariant(model, n=60, dim=2):
    inputs, coords = cloud(2, n, seed=1, dim=dim)
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(inputs, coords=coords)
        permuted = model(inputs[..., permutation], coords=coords[..., permutation])
    torch.testing.assert_close(permuted, out[..., permutation], rtol=1e-12, atol=1e-12)
    assert out.abs().max() > 1e-3


def assert_padding_changes_nothing(model, n=50, pad=9, dim=2):
    """Sample 0 padded with garbage values and coordinates, next to another sample, equals sample 0 alone."""
    inputs, coords = cloud(2, n + pad, seed=3, dim=dim)
    mask = torch.ones(2, n + pad, dtype=torch.bool)
    mask[0, n:] = False
    inputs[0, :, n:], coords[0, :, n:] = float("nan"), float("inf")  # garbage that poisons any sum it enters
    with torch.no_grad():
        together = model(inputs, coords=coords, mask=mask)
        alone = model(inputs[:1, :, :n], coords=coords[:1, :, :n])
    torch.testing.assert_close(together[:1, :, :n], alone, rtol=1e-12, atol=1e-12)
    assert not together[0, :, n:].any()
    return together


def assert_gradcheck(model, n=7):
    inputs, coords = cloud(1, n, seed=4)
    inputs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: model(a, coords=coords), (inputs,))


def write_cloud_file(path, n_samples, seed, dim=2):
    """Clouds of 40 to 70 points in [0, 2] x [-1, 1] (or its 3-D extension): a = s sin(pi x_1 + phi),
    u = a + cos(pi x_2) a^2 / 2."""
    rng = np.random.default_rng(seed)
    low, high = np.array([0.0, -1.0, -1.0][:dim]), np.array([2.0, 1.0, 1.0][:dim])
    with RaggedDatasetWriter(path, pde="cloud_toy", params={}, seed=seed, n_samples=n_samples, geometry="points",
                             channels={"inputs": 1, "outputs": 1}, dim=dim) as writer:
        for _ in range(n_samples):
            points = low + (high - low) * rng.uniform(size=(int(rng.integers(40, 71)), dim))
            a = rng.uniform(0.5, 2.0) * np.sin(np.pi * points[:, :1] + rng.uniform(0, 2 * np.pi))
            writer.append([{"points": points, "inputs": a, "outputs": a + np.cos(np.pi * points[:, 1:2]) * a**2 / 2}])
    return str(path)


def train_from_cli(capsys, tmp_path, train, test, model, epochs=15, lr=0.005):
    """Train ``model`` through ``oplearn train``; returns (metrics per epoch, results, saved config)."""
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": train}, "test": {"path": test}},
              "model": model, "train": {"epochs": epochs, "batch_size": 6, "lr": lr}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    return metrics, results, saved


def tiny_gno(**hyper):
    torch.manual_seed(0)
    options = {"width": 6, "n_layers": 2, "radius": 0.3, "kernel_width": 8, "projection_channels": 8,
               "domain": DOMAIN, **hyper}
    return build("gno", 1, 1, **options).double()


@pytest.mark.parametrize("form", ["linear", "nonlinear", "matrix"])
def test_permuting_the_points_permutes_the_output(form):
    assert_permutation_equivariant(tiny_gno(kernel_form=form))


def test_padding_with_garbage_changes_nothing_at_real_points():
    assert_padding_changes_nothing(tiny_gno())


def test_in_three_dimensions_too():
    model = tiny_gno(dim=3, domain=DOMAIN_3D, radius=0.4)
    assert_permutation_equivariant(model, dim=3)
    assert_padding_changes_nothing(model, dim=3)


def test_without_a_domain_the_batch_box_of_real_points_is_used():
    """domain unset: garbage padding still changes nothing (the box is the real points')."""
    model = tiny_gno(domain=None)
    inputs, coords = cloud(1, 40, seed=5)
    padded = (torch.cat([inputs, torch.full((1, 1, 5), float("nan"), dtype=torch.float64)], 2),
              torch.cat([coords, torch.full((1, 2, 5), -1e6, dtype=torch.float64)], 2))
    mask = torch.arange(45)[None] < 40
    with torch.no_grad():
        torch.testing.assert_close(model(padded[0], coords=padded[1], mask=mask)[..., :40],
                                   model(inputs, coords=coords), rtol=1e-12, atol=1e-12)


def test_chunked_edges_change_nothing():
    inputs, coords = cloud(2, 60, seed=6)
    with torch.no_grad():
        whole = tiny_gno()(inputs, coords=coords)
    chunked = tiny_gno(chunk_edges=13)
    torch.testing.assert_close(chunked(inputs, coords=coords), whole, rtol=1e-12, atol=1e-12)  # under autograd


def test_gradcheck_tiny():
    assert_gradcheck(tiny_gno(width=3, kernel_width=4, projection_channels=4, radius=0.8))


def test_the_radius_matters_and_grids_are_point_sets():
    inputs, coords = cloud(1, 50, seed=7)
    with torch.no_grad():
        assert not torch.allclose(tiny_gno()(inputs, coords=coords), tiny_gno(radius=0.6)(inputs, coords=coords))
        grid = torch.randn(2, 1, 6, 7, dtype=torch.float64)
        model = tiny_gno(domain=None)
        nodes = grid_coordinates((6, 7), dtype=torch.float64, device="cpu").reshape(2, -1).expand(2, -1, -1)
        torch.testing.assert_close(model(grid), model(grid.reshape(2, 1, -1), coords=nodes).reshape(2, 1, 6, 7))


def test_wrong_dimension_and_bad_radius_are_one_line_errors():
    with pytest.raises(ConfigError, match="radius must be positive"):
        build("gno", 1, 1, radius=0.0)
    with pytest.raises(ConfigError, match="domain must be"):
        build("gno", 1, 1, domain=[[0, 0, 0], [1, 1, 1]])


def test_gno_trains_on_a_point_cloud_file_from_the_cli(tmp_path, capsys):
    train = write_cloud_file(tmp_path / "train.h5", 24, seed=1)
    test = write_cloud_file(tmp_path / "test.h5", 6, seed=2)
    metrics, results, saved = train_from_cli(capsys, tmp_path, train, test,
                                             {"name": "gno", "width": 12, "n_layers": 2, "radius": 0.25,
                                              "kernel_width": 16, "projection_channels": 32})
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
    assert np.isfinite(results["test"]["rel_l2"]) and results["test"]["rel_l2"] < 0.5
    low, high = saved["model"]["domain"]  # fitted on the training points: inside [0, 2] x [-1, 1], close to it
    assert 0 <= low[0] < 0.2 and 1.8 < high[0] <= 2 and -1 <= low[1] < -0.8 and 0.8 < high[1] <= 1
    reloaded = evaluate_run(tmp_path / "run", device="cpu")  # the saved domain and weights give the same scores
    assert reloaded["test"]["rel_l2"] == pytest.approx(results["test"]["rel_l2"], rel=1e-6)


def test_data_of_another_dimension_is_a_one_line_error_before_training(tmp_path):
    train = write_cloud_file(tmp_path / "train3d.h5", 6, seed=1, dim=3)
    test = write_cloud_file(tmp_path / "test3d.h5", 2, seed=2, dim=3)
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": train}, "test": {"path": test}},
              "model": {"name": "gno", "width": 4}, "train": {"epochs": 1, "batch_size": 6}}
    with pytest.raises(ConfigError, match="model gno is 2-D, the training data are 3-D; set model.dim=3"):
        fit(config, tmp_path / "run", progress=False)
    config["model"]["dim"] = 3
    fit(config, tmp_path / "run3d", progress=False)  # and with dim=3 it trains
