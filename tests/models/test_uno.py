"""U-NO: shapes on odd grids, the U's skips, exact resolution invariance of its linear part, autograd, training."""

import json

import pytest
import torch
import yaml
from helpers import band_limited, run_cli
from torch import nn

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.resampling_spectral import linear_resample
from oplearn.models import build
from oplearn.models.uno import UNO
from oplearn.train.checkpoint import Checkpoint

TINY_2D = {"modes": [[4, 4], [3, 3], [2, 2], [2, 2], [3, 3]], "width": 8, "projection_channels": 16}


@pytest.mark.parametrize("sizes, modes, hyper", [
    ((17, 17), TINY_2D["modes"], {"padding": 0.1}),
    ((17, 23), TINY_2D["modes"], {"resample": "linear", "padding": [0.1, 0.0]}),
    ((33,), [[4], [3], [2], [2], [3]], {"grid": False}),
    ((9, 11, 10), [[2, 2, 2], [1, 1, 1], [2, 2, 2]], {"scales": [1, 0.5, 1], "channel_multipliers": [1, 2, 1]}),
])
def test_shapes_on_odd_grids(sizes, modes, hyper):
    torch.manual_seed(0)
    model = build("uno", 2, 3, **{**TINY_2D, "modes": modes, **hyper})
    out = model(torch.randn(2, 2, *sizes))
    assert out.shape == (2, 3, *sizes) and torch.isfinite(out).all()


def test_level_grids_and_skip_channels():
    model = UNO(1, 1, **TINY_2D)
    assert model.level_sizes((18, 17)) == [(18, 17), (9, 8), (4, 4), (9, 8), (18, 17)]  # round(8.5) = 8 both times
    assert [model.skip_source(layer) for layer in range(6)] == [None, None, None, None, 1, 0]
    # layer 4 takes v_3 (16 channels) and v_1 (16); the projection v_4 (8) and v_0 (8)
    assert model.blocks[4].pointwise.in_features == 32 and model.projection[0].in_features == 16
    without = UNO(1, 1, **TINY_2D, skips=False)
    assert without.blocks[4].pointwise.in_features == 16 and without.projection[0].in_features == 8


def linear_network(model):
    """The model with every nonlinearity replaced by the identity."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GELU):
                setattr(module, name, nn.Identity())
    return model


def test_linear_part_is_exactly_resolution_invariant_on_band_limited_inputs():
    """Holds when the network is linear and every field stays below the Nyquist frequency of the coarsest grid
    it visits: here inputs with |k| <= 2, modes 2 and a 6-point coarsest level (24 * 0.25). Nonlinearities create
    higher wavenumbers, which the coarse levels alias or drop, so the full model is only approximately invariant."""
    torch.manual_seed(4)
    model = linear_network(UNO(2, 1, modes=[[2, 2]] * 5, width=4, grid=False, projection_channels=8)).double()
    generator = torch.Generator().manual_seed(5)
    terms = [[(tuple(torch.randint(-2, 3, (2,), generator=generator).tolist()), 1.0, float(phase))
              for phase in 6 * torch.rand(5, generator=generator)] for _ in range(2)]
    outputs = [model(torch.stack([band_limited(n, 2, t) for t in terms])[None]).detach() for n in (24, 48)]
    assert outputs[0].abs().max() > 0.01
    torch.testing.assert_close(outputs[1][..., ::2, ::2], outputs[0], rtol=0, atol=1e-12)
    # Linear interpolation of the pointwise path is not exact between grids: the same check fails.
    for block in model.blocks:
        block.resample = linear_resample
    coarse, fine = (model(torch.stack([band_limited(n, 2, t) for t in terms])[None]).detach() for n in (24, 48))
    assert (fine[..., ::2, ::2] - coarse).abs().max() > 1e-3 * coarse.abs().max()


@pytest.mark.parametrize("resample", ["fourier", "linear"])
def test_gradients_match_finite_differences(resample):
    torch.manual_seed(6)
    model = UNO(1, 1, modes=[[2, 2], [1, 1], [2, 2]], scales=[1, 0.5, 1], channel_multipliers=[1, 2, 1],
                width=2, projection_channels=4, padding=0.2, resample=resample).double()
    x = torch.randn(1, 1, 8, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    weights = dict(model.named_parameters())
    chosen = {name: weights[name].detach().clone().requires_grad_() for name in
              ("blocks.1.spectral.weight_pairs", "blocks.2.pointwise.weight")}
    assert torch.autograd.gradcheck(lambda *w: torch.func.functional_call(model, dict(zip(chosen, w)), (x.detach(),)),
                                    tuple(chosen.values()))


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"read the same both ways and end at 1 .* got \[1.0, 0.5, 0.5\]"):
        build("uno", 1, 1, modes=[[2, 2]] * 3, scales=[1, 0.5, 0.5], channel_multipliers=[1, 1, 1])
    with pytest.raises(ConfigError, match="one entry per layer; got 2, 5 and 5"):
        build("uno", 1, 1, modes=[[2, 2]] * 2)
    with pytest.raises(ConfigError, match="the same number per layer"):
        build("uno", 1, 1, modes=[[2, 2], [2], [2, 2], [2, 2], [2, 2]])
    with pytest.raises(ConfigError, match="unknown resample 'cubic'"):
        build("uno", 1, 1, **TINY_2D, resample="cubic")
    with pytest.raises(ShapeError, match=r"UNO layer 1 runs from a \(8, 8\) to a \(4, 4\) grid .* fewer modes there"):
        build("uno", 1, 1, **TINY_2D)(torch.randn(1, 1, 8, 8))
    with pytest.raises(ShapeError, match=r"UNO expects \(batch, 1, 2 spatial axes\)"):
        build("uno", 1, 1, **TINY_2D)(torch.randn(1, 1, 17))


def test_trains_through_the_cli_on_tiny_darcy(tmp_path, capsys):
    for name, n, seed in (("train", 24, 1), ("test", 8, 2)):
        status, _, err = run_cli(capsys, "generate", "darcy", "--n", n, "--resolution", 17, "--seed", seed,
                                 "--out", tmp_path / f"{name}.h5", "--workers", 1)
        assert status == 0, err
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(tmp_path / "train.h5")}, "test": {"path": str(tmp_path / "test.h5")}},
              "model": {"name": "uno", **TINY_2D, "padding": 0.1},
              "train": {"epochs": 6, "batch_size": 6, "lr": 0.01}}
    (tmp_path / "uno.yaml").write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", tmp_path / "uno.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["test_rel_l2"] < 0.7 * metrics[0]["test_rel_l2"] and metrics[-1]["test_rel_l2"] < 0.5
    saved = Checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert saved.tensors["model.domain_padding.reference"].tolist() == [17, 17]  # the padded period is fixed
