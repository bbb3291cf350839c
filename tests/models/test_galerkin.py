"""Galerkin transformer: a set operator (equivariant, blind to padding), grids as their nodes, chunks exact, CLI."""

import json

import pytest
import torch
import yaml
from helpers import run_cli
from train.test_point_data import write_mesh_file

from oplearn.data.sources import open_data
from oplearn.errors import ConfigError
from oplearn.layers.coordinates import grid_coordinates
from oplearn.models import build
from oplearn.train.evaluation import evaluate_run

SMALL = {"dim": 2, "width": 8, "n_layers": 2, "n_heads": 2}
VARIANTS = [{"attention": "galerkin"}, {"attention": "fourier"}, {"coordinates_in_heads": False}]


def model(**hyper):
    torch.manual_seed(0)
    return build("galerkin", 2, 3, **{**SMALL, **hyper}).double().eval()


def points(n, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 2, n, generator=generator, dtype=torch.float64),
            torch.rand(batch, 2, n, generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("hyper", VARIANTS)
def test_shuffling_the_points_shuffles_the_output(hyper):
    net, (x, coords) = model(**hyper), points(20)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(net(x[..., order], coords=coords[..., order]), net(x, coords=coords)[..., order],
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("hyper", VARIANTS)
def test_padded_points_change_nothing_at_real_points(hyper):
    net, (x, coords) = model(**hyper), points(15, batch=1)
    garbage = torch.full((1, 2, 6), float("nan"), dtype=torch.float64)
    garbage[..., :3] = 1e6
    mask = torch.arange(21)[None] < 15
    with torch.no_grad():
        alone = net(x, coords=coords)
        padded = net(torch.cat([x, garbage], -1), coords=torch.cat([coords, -garbage], -1), mask=mask)
    torch.testing.assert_close(padded[..., :15], alone, rtol=0, atol=1e-12)
    assert torch.all(padded[..., 15:] == 0)
    assert alone.abs().max() > 1e-3  # a real output, not zeros


def test_a_grid_is_the_point_set_of_its_nodes():
    net = model()
    grid = torch.randn(2, 2, 5, 7, dtype=torch.float64)
    nodes = grid_coordinates((5, 7), dtype=torch.float64, device="cpu").flatten(1).expand(2, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(net(grid).flatten(2), net(grid.flatten(2), coords=nodes), rtol=0, atol=1e-13)


@pytest.mark.parametrize("hyper", VARIANTS)
def test_chunked_sums_equal_the_whole_sums_with_their_gradients(hyper):
    whole, chunked = model(**hyper), model(**hyper, chunk_points=4)
    grid = torch.randn(2, 2, 5, 3, dtype=torch.float64)
    outputs, gradients = [], []
    for net in (whole, chunked):
        out = net(grid)
        (out**2).sum().backward()
        outputs.append(out.detach())
        gradients.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-11, atol=1e-12)


def test_gradcheck_with_chunks_and_padding():
    net = model(n_layers=1, chunk_points=3)
    x, coords = points(7, batch=2)
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    x.requires_grad_(True)
    coords.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, c: net(a, coords=c, mask=mask), (x, coords))


def test_the_two_forms_are_different_models_of_the_same_weights():
    galerkin, fourier = model(attention="galerkin"), model(attention="fourier")
    fourier.load_state_dict(galerkin.state_dict())  # same parameter names: only the normalized factors differ
    x, coords = points(10)
    with torch.no_grad():
        assert not torch.allclose(galerkin(x, coords=coords), fourier(x, coords=coords))


def test_bf16_autocast_gives_finite_outputs():
    net = build("galerkin", 2, 3, **SMALL, chunk_points=8)
    x, coords = (t.float() for t in points(30))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, coords=coords)
    assert out.shape == (2, 3, 30) and torch.isfinite(out).all()


def test_wrong_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="multiple of n_heads"):
        build("galerkin", 1, 1, dim=2, width=9, n_heads=2)
    with pytest.raises(ConfigError, match="unknown attention 'softmax'"):
        build("galerkin", 1, 1, dim=2, attention="softmax")
    with pytest.raises(ConfigError, match="no coordinate dimension yet"):
        build("galerkin", 1, 1)(torch.zeros(1, 1, 4))
    with pytest.raises(ConfigError, match="predicts at its input points"):
        model()(*points(5)[:1], coords=points(5)[1], queries=torch.zeros(2, 2, 3))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("galerkin_data")
    return {"mesh_train": str(write_mesh_file(root / "mesh_train.h5", 24, 1)),
            "mesh_test": str(write_mesh_file(root / "mesh_test.h5", 8, 2)),
            "darcy": str(root / "darcy.h5")}


def train_by_cli(capsys, tmp_path, train, test, hyper, epochs, batch_size=6):
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": train}, "test": {"path": test}},
              "model": {"name": "galerkin", "width": 16, "n_layers": 2, "n_heads": 2, **hyper},
              "train": {"epochs": epochs, "batch_size": batch_size, "lr": 0.005}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", tmp_path / "config.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["dim"] == 2  # fitted, saved
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert evaluate_run(tmp_path / "run", device="cpu")["test"]["rel_l2"] == pytest.approx(results["test"]["rel_l2"],
                                                                                          rel=1e-5)  # reloads
    return metrics


def test_the_dimension_comes_from_the_training_data(data_files):
    fresh = build("galerkin", 1, 1)
    assert fresh.fit_to_data(open_data(data_files["mesh_train"]))["dim"] == 2 and fresh.hyper.dim == 2
    with pytest.raises(ConfigError, match="dim=3 does not match the training data's 2-D points"):
        build("galerkin", 1, 1, dim=3).fit_to_data(open_data(data_files["mesh_train"]))


def test_trains_on_a_mesh_file_by_cli(data_files, tmp_path, capsys):
    metrics = train_by_cli(capsys, tmp_path, data_files["mesh_train"], data_files["mesh_test"],
                           {"chunk_points": 32}, epochs=12)
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
    assert metrics[-1]["test_rel_l2"] < 0.5 * metrics[0]["test_rel_l2"]


def test_trains_on_a_darcy_grid_file_by_cli(data_files, tmp_path, capsys):
    status, _, err = run_cli(capsys, "generate", "darcy", "--n", 24, "--resolution", 17, "--out", data_files["darcy"])
    assert status == 0, err
    metrics = train_by_cli(capsys, tmp_path, data_files["darcy"], data_files["darcy"], {"attention": "fourier"},
                           epochs=24, batch_size=4)
    # a pointwise map of the coefficient stays near 0.6 on these data; below it, the model has learnt to couple points
    assert metrics[-1]["train_loss"] < 0.7 * metrics[0]["train_loss"] and metrics[-1]["test_rel_l2"] < 0.5
