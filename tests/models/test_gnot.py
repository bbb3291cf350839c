"""GNOT: a set operator (equivariant, blind to padding), grids as their nodes, chunks exact, gated experts, CLI."""

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
from oplearn.models.gnot import GeometricMixture

SMALL = {"dim": 2, "width": 8, "n_layers": 2, "n_heads": 2, "n_experts": 2}
VARIANTS = [{}, {"input_groups": [1, 1]}, {"query_inputs": False}]


def model(**hyper):
    torch.manual_seed(0)
    return build("gnot", 2, 3, **{**SMALL, **hyper}).double().eval()


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


def test_gates_weigh_the_experts_by_position_and_sum_to_one():
    torch.manual_seed(0)
    mixture = GeometricMixture(8, 2, 3, "gelu").double()
    h, coords = torch.randn(2, 10, 8, dtype=torch.float64), torch.rand(2, 10, 2, dtype=torch.float64)
    gates = mixture.gate(coords).softmax(-1)
    expected = sum(gates[..., e:e + 1] * expert(h) for e, expert in enumerate(mixture.experts))
    torch.testing.assert_close(mixture(h, coords), expected, rtol=0, atol=1e-14)
    for expert in mixture.experts[1:]:  # identical experts: the gates' weights sum to one, any gating gives it
        expert.load_state_dict(mixture.experts[0].state_dict())
    torch.testing.assert_close(mixture(h, coords), mixture.experts[0](h), rtol=0, atol=1e-14)


def test_each_input_group_is_its_own_function():
    grouped = model(input_groups=[1, 1])
    assert len(grouped.input_embeddings) == 2 and len(grouped.blocks[0].cross_attention.keys) == 2
    x, coords = points(10)
    swapped = x.flip(1)
    with torch.no_grad():  # the groups have their own weights: swapping the functions changes the output
        assert not torch.allclose(grouped(x, coords=coords), grouped(swapped, coords=coords))
    with pytest.raises(ConfigError, match=r"input_groups \[1, 2\] must be positive channel counts summing to the 2"):
        build("gnot", 2, 1, dim=2, input_groups=[1, 2])


def test_bf16_autocast_gives_finite_outputs():
    net = build("gnot", 2, 3, **SMALL, chunk_points=8)
    x, coords = (t.float() for t in points(30))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, coords=coords)
    assert out.shape == (2, 3, 30) and torch.isfinite(out).all()


def test_wrong_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="multiple of n_heads"):
        build("gnot", 1, 1, dim=2, width=9, n_heads=2)
    with pytest.raises(ConfigError, match="no coordinate dimension yet"):
        build("gnot", 1, 1)(torch.zeros(1, 1, 4))
    with pytest.raises(ConfigError, match="predicts at its input points"):
        model()(*points(5)[:1], coords=points(5)[1], queries=torch.zeros(2, 2, 3))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gnot_data")
    return {"mesh_train": str(write_mesh_file(root / "mesh_train.h5", 24, 1)),
            "mesh_test": str(write_mesh_file(root / "mesh_test.h5", 8, 2)),
            "darcy": str(root / "darcy.h5")}


def train_by_cli(capsys, tmp_path, train, test, hyper, epochs, batch_size=6):
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": train}, "test": {"path": test}},
              "model": {"name": "gnot", "width": 16, "n_layers": 2, "n_heads": 2, "n_experts": 2, **hyper},
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
    fresh = build("gnot", 1, 1)
    assert fresh.fit_to_data(open_data(data_files["mesh_train"]))["dim"] == 2 and fresh.hyper.dim == 2
    with pytest.raises(ConfigError, match="dim=3 does not match the training data's 2-D points"):
        build("gnot", 1, 1, dim=3).fit_to_data(open_data(data_files["mesh_train"]))


def test_trains_on_a_mesh_file_by_cli(data_files, tmp_path, capsys):
    metrics = train_by_cli(capsys, tmp_path, data_files["mesh_train"], data_files["mesh_test"],
                           {"chunk_points": 32}, epochs=12)
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
    assert metrics[-1]["test_rel_l2"] < 0.5 * metrics[0]["test_rel_l2"]


def test_trains_on_a_darcy_grid_file_by_cli(data_files, tmp_path, capsys):
    status, _, err = run_cli(capsys, "generate", "darcy", "--n", 24, "--resolution", 17, "--out", data_files["darcy"])
    assert status == 0, err
    metrics = train_by_cli(capsys, tmp_path, data_files["darcy"], data_files["darcy"], {"n_layers": 1},
                           epochs=24, batch_size=4)
    # a pointwise map of the coefficient stays near 0.6 on these data; below it, the model has learnt to couple points
    assert metrics[-1]["train_loss"] < 0.7 * metrics[0]["train_loss"] and metrics[-1]["test_rel_l2"] < 0.5
