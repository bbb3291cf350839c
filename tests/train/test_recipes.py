"""Second-stage recipes: SpecBoost on the residual of a frozen run, Spectral-Refiner fine-tuning."""

import copy
import json

import pytest
import torch

from oplearn.cli import main
from oplearn.layers import SpectralConv
from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.evaluation import evaluate_run
from oplearn.train.recipes import load_run


def model_tensors(run):
    tensors = Checkpoint(run / "checkpoints" / "last.safetensors").tensors
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_specboost_learns_the_residual_of_a_frozen_run(tiny_run, tmp_path):
    config, run = tiny_run
    boosted = copy.deepcopy(config)
    boosted["stage"] = {"base_run": str(run), "recipe": "specboost"}
    boosted["train"]["epochs"] = 6
    first_weights = model_tensors(run)
    results = fit(boosted, tmp_path / "boost", progress=False)
    first = json.loads((run / "results.json").read_text())["test"]["rel_l2"]
    assert results["test"]["rel_l2"] < first  # the second model removes part of the first one's error
    # The stage-1 run is untouched, and the stage-2 run reloads as base + residual with the same score.
    assert all(torch.equal(value, model_tensors(run)[key]) for key, value in first_weights.items())
    _, model, task = load_run(tmp_path / "boost", "cpu")
    assert task.base is not None and "normalizer.residual.mean" in task.state()
    evaluated = evaluate_run(tmp_path / "boost", device="cpu")
    assert evaluated["test"]["rel_l2"] == pytest.approx(results["test"]["rel_l2"], rel=1e-5)


def test_refine_trains_only_the_released_last_block(tiny_run, tmp_path):
    config, run = tiny_run
    refined = copy.deepcopy(config)
    refined["stage"] = {"base_run": str(run), "recipe": "refine"}
    refined["train"].update(epochs=2, loss="h-1", lr=0.001)
    fit(refined, tmp_path / "refine", progress=False)
    before, after = model_tensors(run), model_tensors(tmp_path / "refine")
    last = "model.blocks.1.spectral."
    for key, value in before.items():
        if not key.startswith(last):
            torch.testing.assert_close(after[key], value, rtol=0, atol=0)  # frozen
    released = after["model.blocks.1.spectral.weight_pairs"]
    assert released.shape[2:4] == (16, 9) and before["model.blocks.1.spectral.weight_pairs"].shape[2:4] == (8, 4)
    assert released[:, :, 4:12].abs().sum() > 0  # the new modes were trained
    assert torch.equal(after["model.domain_padding.reference"], before["model.domain_padding.reference"])
    saved = load_run(tmp_path / "refine", "cpu")[0]
    assert saved.model.model_extra["last_modes"] == [8, 9]
    assert evaluate_run(tmp_path / "refine", device="cpu")["test"]["rel_l2"] < 1.0


def test_released_modes_do_not_change_the_function():
    torch.manual_seed(0)
    layer = SpectralConv(3, 2, (3, 4)).double()
    wider = layer.with_modes((6, 5))
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    torch.testing.assert_close(wider(x), layer(x), rtol=0, atol=1e-14)
    assert wider.weight_pairs.count_nonzero() == layer.weight_pairs.count_nonzero()


def test_second_stage_without_a_first_is_a_one_line_error(small_config, tmp_path, capsys):
    import yaml

    config = copy.deepcopy(small_config)
    config["stage"] = {"base_run": str(tmp_path / "missing"), "recipe": "specboost"}
    path = tmp_path / "stage2.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a run directory" in err and len(err.splitlines()) == 1
    config["stage"]["recipe"] = "boosting"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "stage.recipe" in capsys.readouterr().err
