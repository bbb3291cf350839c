"""Physics-informed training end to end: the pde/boundary terms train data-free, weights balance and resume
exactly, a trained operator is fine-tuned on one new input by its residual, and mistakes are one line."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import assert_user_error, run_cli

from oplearn.data.batch import Batch
from oplearn.data.generate import generate
from oplearn.data.pdes.darcy import DarcyFlow
from oplearn.data.sources import open_data
from oplearn.errors import ConfigError, DataError
from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.fine_tune import fine_tune
from oplearn.train.objective import Objective
from oplearn.train.recipes import load_run
from oplearn.train.run_dir import RunDir

BALANCE = {"scheme": "relobralo", "seed": 3, "expected_rho": 0.5}
PHYSICS = [{"name": "pde", "weight": 1e-4}, {"name": "boundary"}]


@pytest.fixture(scope="module")
def darcy_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("darcy17")
    files = {split: root / f"{split}.h5" for split in ("train", "test")}
    for (split, path), seed, n in zip(files.items(), (1, 2), (20, 10)):
        generate("darcy", n, 17, seed=seed, out=path, params={"oversample": 2}, progress=False, workers=1)
    return files


def config(files, loss, targets=True, epochs=20, balance="fixed") -> dict:
    return {"seed": 0, "model": {"name": "fno", "modes": [6, 6], "width": 16},
            "train": {"epochs": epochs, "batch_size": 10, "lr": 5e-3, "loss": loss, "balance": balance,
                      "scheduler": "constant"},
            "data": {"train": {"path": str(files["train"]), "targets": targets}, "test": {"path": str(files["test"])},
                     "normalize_outputs": targets}}


def test_data_free_training_lowers_the_residual_and_the_error(darcy_files, tmp_path):
    fit(config(darcy_files, PHYSICS, targets=False), tmp_path / "free", progress=False)
    metrics = RunDir(tmp_path / "free").read_metrics()
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] / 10
    assert metrics[-1]["test_rel_l2"] < metrics[0]["test_rel_l2"]  # scored against the solver's solutions


def test_an_inputs_only_file_trains_data_free_as_a_solved_file_without_targets(darcy_files, tmp_path, capsys):
    """``oplearn generate --inputs-only`` draws the same coefficients without solving; training from it (no
    ``targets: false`` needed) gives the very weights of data-free training on the solved file."""
    inputs_only = tmp_path / "inputs.h5"
    status, out, err = run_cli(capsys, "generate", "darcy", "--n", 20, "--resolution", 17, "--seed", 1, "--param",
                               "oversample=2", "--inputs-only", "--out", inputs_only, "--workers", 1)
    assert status == 0, err
    solved = open_data(darcy_files["train"])
    for in_memory in (True, False):  # loaded whole, and read batch by batch
        data = open_data(inputs_only, in_memory=in_memory)
        assert not data.has_targets and data.channels == solved.channels == (1, 1) and len(data) == 20
        assert data.batch(range(20)).targets is None
        assert torch.equal(data.batch(range(20)).inputs, solved.batch(range(20)).inputs)
    status, out, err = run_cli(capsys, "info", inputs_only)
    assert status == 0 and "outputs:   none stored: inputs only" in out, err
    runs = {}
    for name, files, targets in (("inputs_only", {**darcy_files, "train": inputs_only}, True),
                                 ("solved", darcy_files, False)):
        settings = config(files, PHYSICS, epochs=2)
        settings["data"]["train"]["targets"], settings["data"]["normalize_outputs"] = targets, False
        fit(settings, tmp_path / name, progress=False)
        runs[name] = Checkpoint(tmp_path / name / "checkpoints" / "last.safetensors").tensors
    for key, value in runs["solved"].items():
        assert torch.equal(value, runs["inputs_only"][key]), key
    # an inputs-only file cannot score a model, label samples or be asked of a PDE that must be solved
    settings = config({**darcy_files, "test": inputs_only}, PHYSICS, targets=False, epochs=1)
    with pytest.raises(DataError, match="test data .* holds inputs only .*; scoring needs the solutions"):
        fit(settings, tmp_path / "scored", progress=False)
    settings = config({**darcy_files, "train": inputs_only}, PHYSICS, epochs=1)
    settings["data"]["train"]["labelled"], settings["data"]["normalize_outputs"] = 5, False
    with pytest.raises(DataError, match="holds inputs only, so none of its samples is labelled"):
        fit(settings, tmp_path / "labelled", progress=False)
    assert not (tmp_path / "scored").exists() and not (tmp_path / "labelled").exists()
    assert_user_error(capsys, "burgers cannot draw its inputs without solving", "generate", "burgers", "--n", 2,
                      "--resolution", 16, "--inputs-only", "--out", tmp_path / "burgers.h5")
    assert not (tmp_path / "burgers.h5").exists()


def test_balanced_weights_resume_exactly(darcy_files, tmp_path):
    loss = [{"name": "relative_l2"}, {"name": "pde", "weight": 1e-5}]
    full = config(darcy_files, loss, epochs=4, balance=BALANCE)
    fit(full, tmp_path / "straight", progress=False)
    half = copy.deepcopy(full)
    half["train"]["epochs"] = 2
    fit(half, tmp_path / "resumed", progress=False)
    fit(full, tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = (Checkpoint(tmp_path / run / "checkpoints" / "last.safetensors") for run in ("straight", "resumed"))
    assert any(key.startswith("loss.") for key in straight.extra())
    for key, value in straight.tensors.items():
        assert torch.equal(value, resumed.tensors[key]), key


@pytest.mark.parametrize("per_batch", [None, 3])
def test_hybrid_training_never_reads_the_unlabelled_targets(darcy_files, tmp_path, per_batch):
    """``labelled: 5``: a copy of the training file whose samples 5.. have other solutions trains to the same
    weights; the data term sees the first 5, the pde and boundary terms all 20 (``labelled_per_batch: 3``:
    3 of the 5 in every batch)."""
    import h5py

    altered = tmp_path / "altered.h5"
    altered.write_bytes(darcy_files["train"].read_bytes())
    with h5py.File(altered, "r+") as handle:
        handle["outputs"][5:] = handle["outputs"][5:] * 3.0 + 1.0
    loss = [{"name": "relative_l2", "weight": 4.0}, *PHYSICS]
    runs = {}
    for name, path in (("original", darcy_files["train"]), ("altered", altered)):
        settings = config({**darcy_files, "train": path}, loss, epochs=2)
        settings["data"]["train"].update(labelled=5, labelled_per_batch=per_batch)
        fit(settings, tmp_path / name, progress=False)
        runs[name] = Checkpoint(tmp_path / name / "checkpoints" / "last.safetensors").tensors
    for key, value in runs["original"].items():
        assert torch.equal(value, runs["altered"][key]), key
    # ... while labelling all of them does read the altered solutions
    settings = config({**darcy_files, "train": altered}, loss, epochs=2)
    fit(settings, tmp_path / "all", progress=False)
    every = Checkpoint(tmp_path / "all" / "checkpoints" / "last.safetensors").tensors
    assert any(not torch.equal(value, every[key]) for key, value in runs["original"].items())


def test_labelled_per_batch_puts_that_many_labelled_samples_in_every_batch():
    """17 samples, 5 labelled, batches of 4 with 2 labelled: the 12 unlabelled pass once an epoch, 2 to a
    batch; the labelled cycle evenly (each 2 or 3 times in the 6 batches); the order is (seed, epoch)'s."""
    from oplearn.train.distributed import Context, epoch_batches

    context = Context(rank=0, world_size=1, device=torch.device("cpu"))
    def batches(epoch):
        return [b.tolist() for b, _ in epoch_batches(17, 4, 0, epoch, context, labelled=5, labelled_per_batch=2)]
    epoch = batches(0)
    assert len(epoch) == 6 and all(len(b) == 4 for b in epoch)
    assert all(min(b[:2]) >= 0 and max(b[:2]) < 5 and min(b[2:]) >= 5 for b in epoch)
    assert sorted(i for b in epoch for i in b[2:]) == list(range(5, 17))
    counts = np.bincount([i for b in epoch for i in b[:2]], minlength=5)
    assert counts.sum() == 12 and counts.min() == 2 and counts.max() == 3
    assert batches(0) == epoch and batches(1) != epoch


def test_labelled_samples_are_checked_in_one_line(darcy_files, tmp_path):
    settings = config(darcy_files, PHYSICS, epochs=1)
    settings["data"]["train"]["labelled"] = 50
    with pytest.raises(DataError, match="labelled 50 exceeds its 20 samples"):
        fit(settings, tmp_path / "many", progress=False)
    settings = config(darcy_files, PHYSICS, targets=False, epochs=1)
    settings["data"]["train"]["labelled"] = 5
    with pytest.raises(ConfigError, match="'targets' is false"):
        fit(settings, tmp_path / "none", progress=False)
    settings = config(darcy_files, PHYSICS, epochs=1)
    settings["data"]["train"]["labelled_per_batch"] = 2
    with pytest.raises(ConfigError, match="'labelled_per_batch' needs 'labelled'"):
        fit(settings, tmp_path / "none", progress=False)
    settings["data"]["train"].update(labelled=5, labelled_per_batch=10)
    with pytest.raises(ConfigError, match="invalid config: data.train.labelled_per_batch 10 leaves no room .* "
                                          "train.batch_size 10"):
        fit(settings, tmp_path / "none", progress=False)
    settings["data"]["train"].update(labelled=20, labelled_per_batch=2)
    with pytest.raises(DataError, match="all 20 samples are labelled, so labelled_per_batch has no unlabelled"):
        fit(settings, tmp_path / "none", progress=False)
    assert not (tmp_path / "many").exists() and not (tmp_path / "none").exists()


def test_fine_tuning_on_the_residual_improves_an_out_of_distribution_prediction(darcy_files, tmp_path):
    fit(config(darcy_files, "relative_l2"), tmp_path / "run", progress=False)
    _, model, task = load_run(tmp_path / "run", device="cpu")
    pde = DarcyFlow(high=24.0, oversample=2)  # twice the training contrast
    sample = pde.sample(5, 0, 17)
    batch = Batch(torch.tensor(sample["inputs"])[None], torch.tensor(sample["outputs"])[None], spacing=(1 / 16,) * 2,
                  pde="darcy", params=pde.model_dump(mode="json"))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, history = fine_tune(model, task, batch, steps=100, lr=1e-3)

    def error(m):
        with torch.no_grad():
            return ((task.predict(m, batch) - batch.targets).norm() / batch.targets.norm()).item()

    assert history[-1] < history[0] / 10
    assert error(tuned) < error(model)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # the trained model is untouched
    with pytest.raises(ConfigError, match="physics loss terms only"):
        fine_tune(model, task, batch, loss="relative_l2")


def test_the_tune_command_lowers_the_error_on_new_inputs_and_writes_its_results(darcy_files, tmp_path):
    from oplearn.cli import main

    settings = config(darcy_files, "relative_l2", epochs=5)
    fit(settings, tmp_path / "run", progress=False)
    shifted = tmp_path / "contrast24.h5"
    generate("darcy", 2, 17, seed=5, out=shifted, params={"oversample": 2, "high": 24.0}, progress=False, workers=1)
    assert main(["tune", str(tmp_path / "run"), "--data", str(shifted), "--samples", "2", "--steps", "40",
                 "--lr", "3e-3"]) == 0
    summary = json.loads((tmp_path / "run" / "tune" / "tune.json").read_text())
    assert summary["loss"][0] == {"name": "pde", "norm": "h-1"}  # Darcy's default norm
    for entry in summary["samples"]:
        assert entry["final_loss"] < entry["first_loss"] / 2
        assert entry["rel_l2_after"] < entry["rel_l2_before"]
    arrays = np.load(tmp_path / "run" / "tune" / "tune.npz")
    assert arrays["before"].shape == arrays["after"].shape == (2, 1, 17, 17)
    # a second call does not overwrite silently; a missing file is one line
    assert main(["tune", str(tmp_path / "run"), "--data", str(shifted)]) == 2
    assert main(["tune", str(tmp_path / "run"), "--data", str(tmp_path / "missing.h5"), "--overwrite"]) == 2


def test_physics_mistakes_are_one_line_errors(darcy_files, tmp_path):
    with pytest.raises(ConfigError, match="compares with targets") as error:
        fit(config(darcy_files, "relative_l2", targets=False), tmp_path / "a", progress=False)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="normalize_outputs"):
        fit({**config(darcy_files, PHYSICS, targets=False), "data": {
            **config(darcy_files, PHYSICS, targets=False)["data"], "normalize_outputs": True}}, tmp_path / "b",
            progress=False)
    unnamed = Batch(torch.ones(1, 1, 9, 9), None, spacing=(1 / 8,) * 2)
    with pytest.raises(ConfigError, match="name a PDE"):
        Objective.from_config(PHYSICS)(torch.zeros(1, 1, 9, 9), unnamed)
    with pytest.raises(ConfigError, match="initial"):
        Objective.from_config("initial")(torch.zeros(1, 1, 9, 9), Batch(torch.ones(1, 1, 9, 9), None, pde="darcy"))
    assert json.dumps(DarcyFlow().model_dump(mode="json"))  # params of a batch are plain JSON


def test_physics_terms_score_mesh_batches_with_padding(tmp_path):
    from oplearn.data.sources import open_data

    path = tmp_path / "domain.h5"
    generate("darcy_domain", 3, 8, seed=0, out=path, params={"order": 1}, progress=False, workers=1)
    data = open_data(path)
    batch = data.batch([0, 1, 2])
    assert batch.mask is not None and batch.pde == "darcy_domain"  # samples of different sizes, padded
    objective = Objective.from_config("pde")
    exact = objective(batch.targets, batch)  # float32 solutions: rounding level
    assert exact.shape == (3,) and exact.max() < 1e-8
    assert objective(1.1 * batch.targets, batch).min() > 1e-4  # 0.1 f at every interior node
    assert Objective.from_config("boundary")(batch.targets + 1, batch).min() > 0.05


def test_refine_scores_the_model_on_a_finer_grid():
    from oplearn.data.pdes.darcy import solve_darcy

    n, pde = 9, DarcyFlow()
    a = torch.full((2, 1, n, n), 3.0, dtype=torch.float64)
    a[:, :, n // 2:] = 12.0
    batch = Batch(a, None, spacing=(1 / (n - 1),) * 2, pde="darcy", params=pde.model_dump(mode="json"))
    seen = []

    def solver(b):  # an exact "model": solves Darcy on whatever grid it is handed
        seen.append((tuple(b.inputs.shape[2:]), b.spacing, sorted(set(b.inputs.flatten().tolist()))))
        return torch.stack([torch.tensor(solve_darcy(x[0].numpy(), pde.forcing))[None] for x in b.inputs])

    term = Objective.from_config([{"name": "pde", "refine": 3, "interpolation": "nearest"}])
    assert term(solver(batch), batch, solver).max() < 1e-18
    assert seen[-1] == ((25, 25), (1 / 24, 1 / 24), [3.0, 12.0])  # nodes kept, coefficient still two-valued
    coarse_on_fine = Objective.from_config([{"name": "pde", "refine": 3}])(None, batch, lambda b: torch.nn.functional.interpolate(
        solver(batch), size=b.inputs.shape[2:], mode="bilinear", align_corners=True))
    assert coarse_on_fine.min() > 1e-3  # the coarse solution interpolated is not a fine solution
    with pytest.raises(ConfigError, match="refine needs the model"):
        Objective.from_config([{"name": "pde", "refine": 2}])(solver(batch), batch)
    with pytest.raises(ConfigError, match="refine must be an integer"):
        Objective.from_config([{"name": "pde", "refine": 0}])


def test_refine_interpolates_periodic_inputs_spectrally():
    import math

    from oplearn.train.objective import PhysicsTerm

    def field(n):  # a trigonometric polynomial with an even grid's Nyquist mode
        x = torch.arange(n, dtype=torch.float64) / n
        return (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(2 * math.pi * 4 * x))[None, None]

    batch = Batch(field(8), None, spacing=(1 / 8,), pde="burgers", params={})
    fine = PhysicsTerm("pde", refine=3).refined(batch)
    assert fine.spacing == (1 / 24,)
    torch.testing.assert_close(fine.inputs, field(24), atol=1e-12, rtol=0)
