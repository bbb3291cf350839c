"""Time-dependent training modes: recurrent rollout (FNO-2D) and space-time (FNO-3D) on real Navier-Stokes data."""

import json

import pytest
import torch
from torch import nn

from oplearn.data.batch import Batch
from oplearn.data.generate import generate
from oplearn.errors import ConfigError
from oplearn.train import fit
from oplearn.train.evaluation import evaluate_run
from oplearn.train.recipes import load_run
from oplearn.train.task import RecurrentTask, SpaceTimeTask


class NextIsLastPlusOne(nn.Module):
    """A 'model' whose next snapshot is the last one plus one: (b, k*C, *grid) -> (b, C, *grid)."""

    def __init__(self, channels_per_step):
        super().__init__()
        self.c = channels_per_step

    def forward(self, window):
        return window[:, -self.c:] + 1


def test_recurrent_rollout_feeds_predictions_back():
    task = RecurrentTask(steps_out=4, channels_per_step=2)
    inputs = torch.zeros(3, 3 * 2, 5, 5)  # k = 3 snapshots of 2 channels
    inputs[:, -2:] = 10.0
    predicted = task.predict(NextIsLastPlusOne(2), Batch(inputs, None))
    assert predicted.shape == (3, 4 * 2, 5, 5)
    for step in range(4):
        assert torch.all(predicted[:, 2 * step:2 * step + 2] == 11.0 + step)  # built on its own predictions


def test_space_time_outputs_are_time_major_like_the_targets():
    class TimeIndex(nn.Module):  # (b, k, x, y, T) -> (b, 2, x, y, T) holding t and 100 + t
        def forward(self, x):
            assert x.shape == (2, 4, 6, 6, 3)  # the k input snapshots repeated along a new last (time) axis
            t = torch.arange(x.shape[-1], dtype=x.dtype).expand(*x.shape[:1], 1, *x.shape[2:])
            return torch.cat([t, 100 + t], dim=1)

    task = SpaceTimeTask(None, None, steps_out=3)
    predicted = task.predict(TimeIndex(), Batch(torch.zeros(2, 4, 6, 6), None))
    assert predicted.shape == (2, 3 * 2, 6, 6)
    assert predicted[0, :, 0, 0].tolist() == [0, 100, 1, 101, 2, 102]  # (step, channel), step-major


@pytest.fixture(scope="module")
def vorticity_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    params = {"final_time": 1.0, "n_times": 6, "solver_resolution": 32}
    return {name: str(generate("navier_stokes", n, 16, seed=seed, out=root / f"{name}.h5", params=params,
                               workers=1, progress=False))
            for name, n, seed in (("train", 12, 1), ("test", 4, 2))}


def time_config(vorticity_files, task, modes):
    steps = {"input_steps": [0, 1, 2], "output_steps": [3, 4, 5, 6]}
    normalize = task != "recurrent"
    return {"seed": 0, "device": "cpu",
            "data": {"train": {"path": vorticity_files["train"], **steps}, "test": {"path": vorticity_files["test"], **steps},
                     "normalize_inputs": normalize, "normalize_outputs": normalize},
            "model": {"name": "fno", "modes": modes, "width": 8, "n_layers": 2, "projection_channels": 16,
                      "padding": [0.0] * (len(modes) - 1) + [0.7 if task == "space_time" else 0.0]},
            "train": {"epochs": 8, "batch_size": 4, "lr": 0.01, "task": task}}


@pytest.mark.parametrize("task, modes", [("recurrent", [4, 4]), ("space_time", [4, 4, 2])])
def test_time_tasks_train_reload_and_evaluate(vorticity_files, tmp_path, task, modes):
    config = time_config(vorticity_files, task, modes)
    results = fit(config, tmp_path / task, progress=False)
    metrics = [json.loads(line) for line in (tmp_path / task / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.9 * metrics[0]["train_loss"]  # it learns, through the whole rollout
    assert results["test"]["rel_l2"] < 0.9 * metrics[0]["test_rel_l2"]
    _, model, loaded = load_run(tmp_path / task, "cpu")
    assert type(loaded).__name__ == {"recurrent": "RecurrentTask", "space_time": "SpaceTimeTask"}[task]
    assert model.in_channels == 3 and model.out_channels == 1  # snapshots in, one snapshot (per time) out
    if task == "space_time":  # the padded time axis keeps the period of the (x, y, t) grid trained on
        assert model.domain_padding.reference.tolist() == [16, 16, 4]
    assert evaluate_run(tmp_path / task)["test"]["rel_l2"] == pytest.approx(results["test"]["rel_l2"], rel=1e-5)


def test_space_time_model_needs_one_more_axis(vorticity_files, tmp_path):
    with pytest.raises(ConfigError, match="model.modes needs 3 entries for 2-D data"):
        fit(time_config(vorticity_files, "space_time", [4, 4]), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_recurrent_loss_sums_the_per_step_losses():
    task = RecurrentTask(steps_out=2, channels_per_step=1)
    inputs, targets = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    targets[:, 0], targets[:, 1] = 2.0, 3.0  # the rollout predicts 1 then 2
    loss = task.per_sample_loss(NextIsLastPlusOne(1), Batch(inputs, targets))
    assert loss.item() == pytest.approx(1 / 2 + 1 / 3)  # |1-2|/2 + |2-3|/3: relative L2 per step, summed


def test_recurrent_refuses_normalization_and_space_time_needs_the_grid(vorticity_files, tmp_path):
    config = time_config(vorticity_files, "recurrent", [4, 4])
    config["data"]["normalize_inputs"] = True
    with pytest.raises(ConfigError, match="normalizes nothing"):
        fit(config, tmp_path / "a", progress=False)
    config = time_config(vorticity_files, "space_time", [4, 4, 2])
    config["model"]["grid"] = False
    with pytest.raises(ConfigError, match="needs model.grid: true"):
        fit(config, tmp_path / "b", progress=False)


def test_stage_recipes_refuse_time_tasks(vorticity_files, tmp_path):
    config = time_config(vorticity_files, "recurrent", [4, 4])
    config["stage"] = {"base_run": str(tmp_path / "none"), "recipe": "specboost"}
    with pytest.raises(ConfigError, match="stage recipes continue supervised runs"):
        fit(config, tmp_path / "stage", progress=False)


class Replay(nn.Module):
    """A 'model' that replays given snapshots one call after another: (b, k*C, *grid) -> snapshot t."""

    def __init__(self, snapshots):
        super().__init__()
        self.snapshots, self.calls = snapshots, 0

    def forward(self, window):
        self.calls += 1
        return self.snapshots[:, self.calls - 1:self.calls]


def test_recurrent_physics_terms_score_the_whole_rollout(vorticity_files):
    """The pde term of a rollout is the residual of cat(inputs, rollout) on all input and output times: for
    the solver's own snapshots it is the solver's small residual, for a wrong rollout it is large."""
    from oplearn.data.pdes import get_pde
    from oplearn.data.sources import open_data
    from oplearn.train.objective import Objective

    data = open_data(vorticity_files["train"], input_steps=[0, 1, 2], output_steps=[3, 4, 5, 6])
    batch = data.batch(range(4))
    task = RecurrentTask(steps_out=4, channels_per_step=1, loss=Objective.from_config([{"name": "pde"}]))
    solver = task.per_sample_loss(Replay(batch.targets), batch)
    equation = get_pde(data.pde, **{k: v for k, v in data.params.items() if k not in ("input_times", "output_times")})
    direct = equation.residual(batch.targets.double(), batch).square().flatten(1).mean(1)
    torch.testing.assert_close(solver.double(), direct, rtol=1e-4, atol=1e-8)
    wrong = task.per_sample_loss(NextIsLastPlusOne(1), batch)
    assert (wrong > 100 * solver).all()
    both = RecurrentTask(4, 1, Objective.from_config([{"name": "relative_l2"}, {"name": "pde", "weight": 0.0}]))
    assert torch.allclose(both.per_sample_loss(Replay(batch.targets), batch), torch.zeros(4), atol=1e-6)


def test_recurrent_training_runs_data_free_on_the_residual(vorticity_files, tmp_path):
    config = time_config(vorticity_files, "recurrent", [4, 4])
    config["data"]["train"]["targets"] = False
    config["train"].update(loss=[{"name": "pde"}], epochs=6)
    fit(config, tmp_path / "free", progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "free" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
