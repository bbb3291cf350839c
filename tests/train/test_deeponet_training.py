"""DeepONet, POD-DeepONet and MIONet through the trainer and the CLI: train, evaluate, predict at queries."""

import json

import numpy as np
import pytest
import torch
import yaml
from helpers import assert_user_error, run_cli

from oplearn.data.ragged import RaggedDatasetWriter
from oplearn.train.config import load_config
from oplearn.train.recipes import load_run

SMALL = {"deeponet": {"basis": 16, "branch_layers": [32], "trunk_layers": [32]},
         "pod_deeponet": {"basis": 8, "branch_layers": [32]},
         "mionet": {"basis": 16, "branch_layers": [32], "trunk_layers": [32], "trunk_features": "fourier"}}


def _config(tmp_path, files, model, epochs=6):
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": files["train"]}, "test": {"path": files["test"]}},
              "model": {"name": model, **SMALL.get(model, {})},
              "train": {"epochs": epochs, "batch_size": 6, "lr": 0.003}}
    path = tmp_path / f"{model}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("model", ["deeponet", "pod_deeponet", "mionet"])
def test_trains_and_evaluates_at_other_grids_and_query_points(model, darcy_files, tmp_path, capsys):
    run = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", _config(tmp_path, darcy_files, model), "--out", run)
    assert status == 0, err
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["test_rel_l2"] < metrics[0]["test_rel_l2"] and metrics[-1]["test_rel_l2"] < 1
    saved = load_config(run / "config.yaml")
    assert saved.model.hyperparameters()["sensors"] == [16, 16]  # the fitted sensor grid is saved

    # zero-shot on the 24x24 test set: inputs sampled at the 16x16 sensors, outputs on 24x24
    status, out, err = run_cli(capsys, "eval", run, "--data", darcy_files["test_24"], "--device", "cpu")
    assert status == 0, err
    assert json.loads(out.strip().splitlines()[-1])["test_24"] < 1

    points = np.random.default_rng(0).uniform(size=(50, 2)).astype(np.float32)
    np.save(tmp_path / "points.npy", points)
    status, out, err = run_cli(capsys, "eval", run, "--queries", tmp_path / "points.npy", "--device", "cpu")
    assert status == 0, err
    saved = np.load(run / "eval" / "queries.npz")
    assert saved["predictions"].shape == (8, 1, 50) and np.allclose(saved["points"], points)
    assert (run / "figures" / "queries.png").is_file()

    # the query at grid nodes equals the grid prediction there
    _, trained, task = load_run(run, "cpu")
    from oplearn.data.sources import open_data

    batch = open_data(darcy_files["test"]).batch([0, 1])
    with torch.no_grad():
        on_grid = task.predict(trained, batch)
        nodes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5 / 15, 10 / 15]]).T
        at = task.predict(trained, batch.__class__(**{**batch.__dict__, "queries": nodes}))
    assert torch.allclose(at[:, 0], torch.stack([on_grid[:, 0, 0, 0], on_grid[:, 0, -1, -1],
                                                 on_grid[:, 0, 5, 10]], -1), atol=1e-4)


def test_queries_need_a_query_model_and_a_valid_file(darcy_files, tmp_path, capsys, tiny_run):
    _, fno_run = tiny_run
    np.save(tmp_path / "points.npy", np.zeros((4, 2), np.float32))
    assert_user_error(capsys, "predicts on its input's points only", "eval", fno_run, "--queries",
                      tmp_path / "points.npy", "--device", "cpu")
    run = tmp_path / "run"
    assert run_cli(capsys, "train", _config(tmp_path, darcy_files, "deeponet", epochs=1), "--out", run)[0] == 0
    np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.float32))
    assert_user_error(capsys, "3-D points for 2-D data", "eval", run, "--queries", tmp_path / "bad.npy")
    assert_user_error(capsys, "does not exist", "eval", run, "--queries", tmp_path / "missing.npy")


def _points_file(path, n, seed):
    """Point clouds sharing 30 sensor points: a(x) = s sin(2 pi (x_1 + phi)), u = a + a^2 / 2."""
    rng = np.random.default_rng(seed)
    points = np.random.default_rng(0).uniform(size=(30, 2))
    with RaggedDatasetWriter(path, pde="pointwise_toy", params={}, seed=seed, n_samples=n, geometry="points",
                             channels={"inputs": 1, "outputs": 1}, dim=2) as writer:
        for _ in range(n):
            a = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * (points[:, :1] + rng.uniform()))
            writer.append([{"points": points, "inputs": a, "outputs": a + a**2 / 2}])
    return str(path)


def test_deeponet_on_point_clouds(tmp_path, capsys):
    files = {"train": _points_file(tmp_path / "train.h5", 24, 1), "test": _points_file(tmp_path / "test.h5", 8, 2)}
    run = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", _config(tmp_path, files, "deeponet", epochs=8), "--out", run)
    assert status == 0, err
    assert load_config(run / "config.yaml").model.hyperparameters()["sensors"] == [30]
    np.save(tmp_path / "points.npy", np.random.default_rng(3).uniform(size=(12, 2)).astype(np.float32))
    status, out, err = run_cli(capsys, "eval", run, "--queries", tmp_path / "points.npy", "--device", "cpu")
    assert status == 0, err
    assert np.load(run / "eval" / "queries.npz")["predictions"].shape == (8, 1, 12)


@pytest.mark.parametrize("model", ["deeponet", "pod_deeponet"])
def test_deeponet_as_specboost_second_stage_fits_the_residuals(model, tiny_run, tmp_path):
    """The second stage's data-dependent parts (sensors; POD modes) are fitted to the first run's residuals."""
    from oplearn.data.sources import open_data
    from oplearn.train import fit

    config, run = tiny_run
    boosted = {**config, "model": {"name": model, **SMALL[model]}, "stage": {"base_run": str(run), "recipe": "specboost"},
               "train": {**config["train"], "epochs": 8, "lr": 0.003}}
    results = fit(boosted, tmp_path / "boost", progress=False)
    first = json.loads((run / "results.json").read_text())["test"]["rel_l2"]
    assert results["test"]["rel_l2"] < first
    _, second, task = load_run(tmp_path / "boost", "cpu")
    assert second.hyper.sensors == [16, 16]
    if model == "pod_deeponet":  # the modes span the normalized training residuals, not the outputs
        train = open_data(config["data"]["train"]["path"])
        _, base, base_task = load_run(run, "cpu")
        batch = train.batch(list(range(len(train))))
        with torch.no_grad():
            residual = task.output_normalizer.encode(batch.targets - base_task.predict(base, batch)).double()
        centred = (residual - second.pod_mean.double()).flatten(1)
        modes = second.pod_modes.double().flatten(1)
        projected = centred @ modes.T @ modes
        outputs = task.output_normalizer.encode(batch.targets).double().flatten(1) - second.pod_mean.double().flatten()
        assert (centred - projected).norm() < (outputs - outputs @ modes.T @ modes).norm()
