"""muP (maximal-update parameterization) for the MLP and FNO, coordinate checks, the trainer's param-group hook."""

import math

import pytest
import torch

from oplearn.models.width import coord_check, param_groups
from oplearn.plot import plot_coord_check
from oplearn.errors import ConfigError
from oplearn.models import build
from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.trainer import parameter_groups


DEFAULT_FNO_SUM = -1.41139940148787  # sum of the weights of the default FNO below at commit db74260, seed 0


def fno(width, parameterization="standard", base_width=None, seed=0):
    torch.manual_seed(seed)
    extra = {"base_width": base_width} if base_width is not None else {}
    return build("fno", in_channels=1, out_channels=1, modes=(3, 3), width=width, n_layers=2,
                 projection_channels=16, parameterization=parameterization, **extra)


def mlp(width, parameterization="standard", base_width=None, seed=0):
    torch.manual_seed(seed)
    extra = {"base_width": base_width} if base_width is not None else {}
    return build("mlp", in_channels=4, out_channels=1, width=width, n_layers=2,
                 parameterization=parameterization, **extra)


def ratios(results, narrow, wide, step):
    return {layer: results[wide][layer][step] / results[narrow][layer][step] for layer in results[narrow]}


def test_mlp_coordinates_stay_flat_under_mup_and_grow_under_sp(tmp_path):
    torch.manual_seed(0)
    data = (torch.randn(32, 4), torch.randn(32, 1))
    widths = [32, 512]
    mup = coord_check(lambda w: mlp(w, "mup", base_width=32), widths, data, steps=4, lr=1e-2)
    mup_update = coord_check(lambda w: mlp(w, "mup", base_width=32), widths, data, steps=4, lr=1e-2,
                             measure="update")
    sp_update = coord_check(mlp, widths, data, steps=4, lr=1e-2, measure="update")
    for step in (1, 2, 3):
        for name, value in {**ratios(mup, 32, 512, step), **ratios(mup_update, 32, 512, step)}.items():
            assert 0.5 < value < 2.0, (step, name, value)
    # Standard parameterization: the first Adam step moves the output ~width times more.
    assert ratios(sp_update, 32, 512, 1)["output"] > 3.0
    png = plot_coord_check(mup, tmp_path / "coord.png", title="MLP muP")
    assert png.stat().st_size > 1000


def test_fno_updates_stay_flat_under_mup_and_grow_under_sp():
    torch.manual_seed(0)
    data = (torch.randn(4, 1, 12, 12), torch.randn(4, 1, 12, 12))
    mup = coord_check(lambda w: fno(w, "mup", base_width=8), [8, 64], data, steps=3, lr=5e-3, measure="update")
    sp = coord_check(fno, [8, 64], data, steps=3, lr=5e-3, measure="update")
    for step in (1, 2):
        for name, value in ratios(mup, 8, 64, step).items():
            assert 0.5 < value < 2.0, (step, name, value)
    assert ratios(sp, 8, 64, 1)["output"] > 3.0
    assert ratios(sp, 8, 64, 1)["blocks.1.spectral"] > 3.0


def test_mup_rescales_the_same_draws_by_the_documented_factors():
    m = 4  # width 32 against base 8
    sp, mup = fno(32), fno(32, "mup", base_width=8)
    assert mup.mup_roles["lifting.weight"] == "input" and mup.mup_roles["projection.2.weight"] == "input"
    assert mup.mup_roles["blocks.0.spectral.weight_pairs"] == "hidden"
    assert mup.mup_roles["blocks.1.pointwise.weight"] == "hidden"
    assert mup.mup_roles["projection.0.weight"] == "output"
    assert mup.mup_roles["blocks.0.pointwise.bias"] == "vector"
    factor = {"input": 1.0, "vector": 1.0, "output": 1 / math.sqrt(m)}
    for (name, a), b in zip(sp.named_parameters(), mup.parameters()):
        assert a.shape == b.shape  # same function class
        role = mup.mup_roles[name]
        # SP spectral variance is 1/(in*out) -> muP 1/(in*base_out): sqrt(m); Conv1x1 already 1/fan_in.
        expected = factor.get(role, math.sqrt(m) if "spectral" in name else 1.0)
        torch.testing.assert_close(b, a * expected, rtol=1e-6, atol=0)
    lrs = {id(p): group["lr"] for group in mup.optimizer_groups(0.1) for p in group["params"]}
    for name, p in mup.named_parameters():
        want = 0.1 / m if mup.mup_roles[name] in ("hidden", "output") else 0.1
        assert lrs[id(p)] == pytest.approx(want), name
    assert mup.optimizer_groups(0.1)[0]["lr"] == 0.1  # the base rate comes first (logged by the trainer)


def test_standard_is_unchanged_and_mup_at_base_width_is_standard():
    reference = fno(16)
    for model in (fno(16, "standard"), fno(16, "mup", base_width=16)):
        for a, b in zip(reference.parameters(), model.parameters()):
            assert torch.equal(a, b)
        assert [g["lr"] for g in model.optimizer_groups(1e-3)] == [1e-3]
    # The default FNO draws the same weights as before the hook existed (sum recorded from commit db74260).
    torch.manual_seed(0)
    default = build("fno", in_channels=1, out_channels=1, modes=(4, 4), width=8, n_layers=2)
    total = sum(p.double().sum().item() for p in default.parameters())
    assert total == pytest.approx(DEFAULT_FNO_SUM, rel=0, abs=1e-9)


def test_bad_parameterizations_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown parameterization"):
        fno(8, "ntk")
    with pytest.raises(ConfigError, match="base_width applies only"):
        fno(8, base_width=4)
    with pytest.raises(ConfigError, match="muP does not know"):
        build("fno", in_channels=1, out_channels=1, modes=(3, 3), width=16, mixer="kan", parameterization="mup",
              base_width=8)


def test_trainer_uses_the_models_parameter_groups(small_config, tmp_path):
    config = {**small_config, "train": {**small_config["train"], "epochs": 1}}
    config["model"] = {**config["model"], "width": 16, "parameterization": "mup", "base_width": 8}
    fit(config, tmp_path / "run", progress=False)
    groups = Checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").meta["optimizer"]["param_groups"]
    assert sorted(g["initial_lr"] for g in groups) == pytest.approx([0.005, 0.01])
    model = fno(16, "mup", base_width=8)
    for p in model.lifting.parameters():
        p.requires_grad_(False)
    kept = [p for g in parameter_groups(model, 0.01) for p in g["params"]]
    assert len(kept) == len(list(model.parameters())) - 2 and all(p.requires_grad for p in kept)
    assert len(param_groups(torch.nn.Linear(2, 2), 0.1)) == 1
