"""The training loop: learning happens, resume is exact, NaN stops cleanly."""

import copy
import json

import pytest
import torch

from oplearn.data.formats import load_arrays
from oplearn.data.generate import generate
from oplearn.errors import ConfigError, DataError, TrainingError
from oplearn.train import Callback, fit
from oplearn.train.checkpoint import Checkpoint


def weights(run):
    checkpoint = Checkpoint(run / "checkpoints" / "last.safetensors")
    return {k: v for k, v in checkpoint.tensors.items() if k.startswith(("model.", "optimizer."))}


def test_training_lowers_the_error_and_writes_the_run(small_config, tmp_path):
    config = copy.deepcopy(small_config)
    config["train"]["epochs"] = 6
    results = fit(config, tmp_path / "run", progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 7))
    assert metrics[-1]["test_rel_l2"] < 0.7 * metrics[0]["test_rel_l2"]
    assert results["test"]["rel_l2"] == pytest.approx(metrics[-1]["test_rel_l2"])
    assert results["test_24"]["resolution"] == [24, 24]
    assert (tmp_path / "run" / "config.yaml").is_file()
    # Normalizers come from the training split only.
    saved = Checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    train_inputs = load_arrays(config["data"]["train"]["path"])["arrays"]["inputs"]
    assert saved.extra()["normalizer.inputs.mean"].item() == pytest.approx(train_inputs.mean(), rel=1e-5)
    assert saved.state["config"]["model"]["width"] == 8 and "rng.torch" in saved.extra()
    assert saved.tensors["model.domain_padding.reference"].tolist() == [16, 16]  # the training grid's period
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results


def test_resume_continues_exactly(small_config, tmp_path):
    fit(small_config, tmp_path / "straight", progress=False)
    half = copy.deepcopy(small_config)
    half["train"]["epochs"] = 2
    fit(half, tmp_path / "resumed", progress=False)
    fit(small_config, tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_run_directory_is_not_overwritten_silently(small_config, tmp_path):
    config = copy.deepcopy(small_config)
    config["train"]["epochs"] = 1
    fit(config, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        fit(config, tmp_path / "run", progress=False)
    changed = copy.deepcopy(config)
    changed["model"]["width"] = 4
    with pytest.raises(ConfigError, match=r"model\.width 8 \(now: 4\); only train.epochs may change"):
        fit(changed, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="cannot resume"):
        fit(config, tmp_path / "fresh", resume=True, progress=False)


def test_existing_data_must_match_the_generator_settings(small_config, tmp_path):
    # A file from other settings (or an older generator) is refused, not trained on silently.
    path = tmp_path / "darcy.h5"
    generate("darcy", 8, 16, seed=3, out=path, params={"oversample": 1, "constant_mode": True}, progress=False)
    config = copy.deepcopy(small_config)
    config["train"]["epochs"] = 1
    source = {"path": str(path), "pde": "darcy", "n": 8, "resolution": 16, "seed": 3, "params": {"oversample": 1}}
    config["data"]["train"] = source
    with pytest.raises(DataError, match=r"generated with constant_mode True \(config: False\); delete the file"):
        fit(config, tmp_path / "run", progress=False)
    config["data"]["train"] = {**source, "seed": 4, "params": {"oversample": 1, "constant_mode": True}}
    with pytest.raises(DataError, match=r"with seed 3 \(config: 4\)"):
        fit(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    config["data"]["train"] = {**source, "params": {"oversample": 1, "constant_mode": True}}
    fit(config, tmp_path / "run", progress=False)


class Diverge(Callback):
    """From the second epoch on the lifting layer puts out NaN, as a blown-up step would."""

    def on_epoch_end(self, epoch, metrics, model):
        if epoch == 1:  # the epoch-1 checkpoint is written after this, with finite weights
            model.lifting.register_forward_hook(lambda module, inputs, output: output * float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_config, tmp_path):
    with pytest.raises(TrainingError, match="became nan in epoch 2.*last good checkpoint"):
        fit(small_config, tmp_path / "run", progress=False, callbacks=[Diverge()])
    checkpoint = Checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert checkpoint.state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint.tensors.values())


def test_kan_grid_updates_move_the_grids_to_the_training_data(small_config, tmp_path):
    """train.kan_grid_updates: a KAN-FNO's lifting grid spans its inputs on the first batch_size samples
    (normalized coefficient, coordinates in [0, 1]); without it the grids stay on the default [-1, 1]."""
    from oplearn.data.dataset import FieldDataset
    from oplearn.train.recipes import load_run

    ranges = {}
    for updates in (0, 1):
        config = copy.deepcopy(small_config)
        config["model"].update(mixer="kan", kan_grid_size=4)
        config["train"].update(epochs=2, kan_grid_updates=updates)
        fit(config, tmp_path / f"updates_{updates}", progress=False)
        _, model, task = load_run(tmp_path / f"updates_{updates}", "cpu")
        ranges[updates] = torch.stack(model.lifting.kan.basis.grid_range()).T  # (features, 2): low, high
    torch.testing.assert_close(ranges[0], torch.tensor([[-1.0, 1.0]] * 3))
    inputs = FieldDataset.open(small_config["data"]["train"]["path"]).batch(list(range(6))).inputs
    encoded = task.input_normalizer.encode(inputs).double()
    expected = torch.tensor([[encoded.min(), encoded.max()], [0.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(ranges[1].double(), expected, atol=1e-6, rtol=1e-6)
