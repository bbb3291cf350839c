"""`oplearn ntk` end to end on a tiny trained Darcy run (trained with the NTK drift probe), and its one-line errors."""

import copy
import json

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from oplearn.analysis.kernels import kernel_target_alignment
from oplearn.analysis.ntk import empirical_ntk
from oplearn.data.dataset import FieldDataset
from oplearn.train import fit
from oplearn.train.probes import NTKDrift
from oplearn.train.recipes import load_run
from oplearn.train.task import fit_normalizers

from helpers import assert_user_error, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory, darcy_files, tiny_config):
    config = {**tiny_config, "train": {**tiny_config["train"], "epochs": 2}}
    train = FieldDataset.open(darcy_files["train"])
    probe = fit_normalizers(train)[0].encode(train.batch(range(4)).inputs)
    drift = NTKDrift(probe, method="jacobian")
    run = tmp_path_factory.mktemp("ntk") / "run"
    fit(config, run, progress=False, callbacks=[drift])
    return config, run, drift


def test_drift_probe_follows_a_real_training_run(trained):
    _, run, drift = trained
    # The trainer calls on_train_begin, so K_0 is the kernel at initialization and drift grows from there.
    assert drift.reference_epoch == 0 and [epoch for epoch, _ in drift.history] == [1, 2]
    assert 0.0 < drift.history[0][1] < drift.history[-1][1] < 10.0
    logged = [json.loads(line)["ntk_drift"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == [value for _, value in drift.history]


def test_ntk_of_a_trained_run(capsys, trained, darcy_files, tmp_path):
    _, run, _ = trained
    out = tmp_path / "ntk"
    status, stdout, _ = run_cli(capsys, "ntk", run, "--data", darcy_files["test"], "--n", 6, "--device", "cpu",
                                "--out", out, "--method", "jacobian", "--dtype", "float32")
    assert status == 0 and "kernel-target alignment" in stdout
    report = json.loads((out / "ntk.json").read_text())
    values = np.array(report["eigenvalues"])
    assert report["n"] == 6 and len(values) == 6 and np.all(np.diff(values) <= 0) and values[-1] > 0
    assert report["condition_number"] == pytest.approx(values[0] / values[-1])
    assert 1.0 <= report["effective_rank_participation"] <= report["effective_rank_entropy"] <= 6.0
    assert sum(report["residual_energy_fraction"]) == pytest.approx(1.0)

    # The written kernel is the trained model's trace NTK on the normalized inputs.
    _, model, task = load_run(run, "cpu")
    batch = FieldDataset.open(darcy_files["test"], n=6).batch(range(6))
    inputs, outputs = batch.inputs, batch.targets
    kernel = load_file(str(out / "kernel.safetensors"))["kernel"]
    expected = empirical_ntk(model, task.input_normalizer.encode(inputs), method="jacobian")
    torch.testing.assert_close(kernel, expected.double())
    targets = task.output_normalizer.encode(outputs)
    assert report["kernel_target_alignment"] == pytest.approx(kernel_target_alignment(kernel, targets), rel=1e-9)
    assert 0.0 < report["kernel_target_alignment"] <= 1.0
    figure = matplotlib.image.imread(out / "spectrum.png")
    assert figure.shape[0] > 200 and np.std(figure[..., :3]) > 0.05

    assert_user_error(capsys, "already holds NTK results; pass --overwrite", "ntk", run, "--data",
                      darcy_files["test"], "--n", 6, "--device", "cpu", "--out", out)
    status, _, _ = run_cli(capsys, "ntk", run, "--data", darcy_files["test"], "--n", 3, "--device", "cpu",
                           "--out", out, "--overwrite", "--method", "jacobian")
    assert status == 0 and json.loads((out / "ntk.json").read_text())["n"] == 3


def test_ntk_of_a_fresh_model_from_a_config(capsys, trained, darcy_files, tmp_path):
    config = copy.deepcopy(trained[0])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "fresh"
    status, _, _ = run_cli(capsys, "ntk", path, "--data", darcy_files["test"], "--n", 4, "--device", "cpu",
                           "--set", "model.width=4", "--out", out, "--dtype", "float32", "--method", "jacobian")
    report = json.loads((out / "ntk.json").read_text())
    assert status == 0 and report["fresh_model"] and report["n"] == 4 and report["dtype"] == "float32"


def test_bad_input_gives_one_line_errors(capsys, trained, darcy_files, tmp_path):
    _, run, _ = trained
    data = darcy_files["test"]
    assert_user_error(capsys, "is neither a run directory nor a config", "ntk", tmp_path / "missing", "--data", data)
    assert_user_error(capsys, "not a run directory", "ntk", tmp_path, "--data", data)
    assert_user_error(capsys, "--data .* does not exist", "ntk", run, "--data", tmp_path / "none.h5")
    assert_user_error(capsys, "holds 8 samples but 100 were asked for", "ntk", run, "--data", data, "--n", 100)
    assert_user_error(capsys, "--set applies to a config file only", "ntk", run, "--data", data,
                      "--set", "model.width=4")
    assert_user_error(capsys, "--n must be at least 2", "ntk", run, "--data", data, "--n", 1)
