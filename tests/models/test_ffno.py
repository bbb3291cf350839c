"""F-FNO: parameter count, shared weights, the residual block, padding, gradients, CLI training."""

import json

import pytest
import torch
import yaml
from helpers import run_cli

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import FFNO, build
from oplearn.train.checkpoint import Checkpoint


def expected_parameters(c_in, c_out, d, width, n_layers, modes, factor, share, projection, grid=True):
    lifting = (c_in + (d if grid else 0)) * width + width
    spectral = 2 * width * width * sum(modes) * (1 if share else n_layers)
    hidden = factor * width
    feedforward = n_layers * (width * hidden + hidden + hidden * width + width)
    head = width * projection + projection + projection * c_out + c_out
    return lifting + spectral + feedforward + head


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("modes", [(5,), (4, 6), (3, 2, 4)])
def test_parameter_count_formula(modes, share):
    model = FFNO(2, 3, modes=modes, width=6, n_layers=3, feedforward_factor=2, share_weights=share,
                 projection_channels=10)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(
        2, 3, len(modes), 6, 3, modes, 2, share, 10)
    assert len(model.spectral) == (1 if share else 3)


@pytest.mark.parametrize("modes, sizes", [((6,), (24,)), ((4, 5), (12, 10)), ((3, 3, 3), (8, 8, 6))])
def test_any_dimension_and_grid_size_with_padding(modes, sizes):
    torch.manual_seed(0)
    model = build("ffno", 2, 3, modes=modes, width=8, n_layers=2, padding=0.25, projection_channels=8)
    for scale in (1, 2):
        x = torch.randn(2, 2, *[n * scale for n in sizes])
        assert model(x).shape == (2, 3, *x.shape[2:])


def test_block_is_residual_feedforward_of_the_spectral_sum():
    torch.manual_seed(1)
    model = FFNO(1, 1, modes=(3, 3), width=4, n_layers=2, grid=False, projection_channels=4).double()
    v = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    block, spectral = model.blocks[0], model.spectral[0]
    first, second = block.feedforward[0], block.feedforward[2]
    k = spectral.along_axis(v, 0) + spectral.along_axis(v, 1)
    hidden = torch.nn.functional.gelu(torch.einsum("oi,bixy->boxy", first.weight, k) + first.bias[:, None, None])
    expected = v + torch.einsum("oi,bixy->boxy", second.weight, hidden) + second.bias[:, None, None]
    torch.testing.assert_close(block(v, spectral), expected, rtol=1e-12, atol=1e-12)


def test_shared_weights_are_one_spectral_layer_used_by_every_block():
    torch.manual_seed(2)
    model = FFNO(1, 1, modes=(3, 3), width=4, n_layers=3, share_weights=True, projection_channels=4)
    calls = []
    model.spectral[0].register_forward_hook(lambda module, args, output: calls.append(1))
    model(torch.randn(2, 1, 8, 8)).square().mean().backward()
    assert len(calls) == 3
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in model.spectral[0].weight_pairs)
    # a checkpoint holds each tensor once (safetensors refuses shared storage)
    assert sum("spectral" in name for name in model.state_dict()) == 2


def test_periodic_model_commutes_with_shifts_and_padding_changes_it():
    torch.manual_seed(3)
    plain = FFNO(1, 1, modes=(4, 4), width=8, n_layers=2, grid=False, projection_channels=8)
    x = torch.randn(1, 1, 16, 16)
    shifted = torch.roll(x, shifts=(3, 5), dims=(2, 3))
    torch.testing.assert_close(plain(shifted), torch.roll(plain(x), shifts=(3, 5), dims=(2, 3)), atol=1e-5, rtol=1e-5)
    padded = FFNO(1, 1, modes=(4, 4), width=8, n_layers=2, grid=False, projection_channels=8, padding=0.25)
    padded.load_state_dict(plain.state_dict())
    assert not torch.allclose(plain(x), padded(x), atol=1e-4)


def test_gradcheck_tiny_model():
    torch.manual_seed(4)
    model = FFNO(1, 1, modes=(2, 2), width=3, n_layers=2, projection_channels=3, padding=0.2).double()
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="modes"):
        build("ffno", 1, 1)
    with pytest.raises(ConfigError, match="padding"):
        build("ffno", 1, 1, modes=(4,), padding=2)
    with pytest.raises(ConfigError, match="must be positive"):
        build("ffno", 1, 1, modes=(4,), feedforward_factor=0)
    with pytest.raises(ConfigError, match="unknown hyperparameter.*share_weight"):
        build("ffno", 1, 1, modes=(4,), share_weight=True)
    with pytest.raises(ConfigError, match="refine is implemented for fno"):
        build("ffno", 1, 1, modes=(4,)).refine((16,))
    model = build("ffno", 1, 1, modes=(8, 8), width=4)
    with pytest.raises(ShapeError, match="expects"):
        model(torch.randn(1, 1, 32))
    with pytest.raises(ShapeError, match="needs at least 14"):
        model(torch.randn(1, 1, 10, 32))


def test_trains_through_the_cli(tmp_path, capsys):
    for split, n, seed in (("train", 24, 1), ("test", 8, 2)):
        status, _, err = run_cli(capsys, "generate", "darcy", "--n", n, "--resolution", 17, "--seed", seed,
                                 "--workers", 1, "--out", tmp_path / f"{split}.h5")
        assert status == 0, err
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(tmp_path / "train.h5")}, "test": {"path": str(tmp_path / "test.h5")}},
              "model": {"name": "ffno", "modes": [5, 5], "width": 8, "n_layers": 2, "padding": 0.1,
                        "projection_channels": 16, "share_weights": True},
              "train": {"epochs": 8, "batch_size": 6, "lr": 0.01}}
    (tmp_path / "ffno.yaml").write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", tmp_path / "ffno.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 8
    assert metrics[-1]["test_rel_l2"] < 0.5 * metrics[0]["test_rel_l2"], metrics
    assert metrics[-1]["test_rel_l2"] < 0.35  # measured 0.22 after 8 epochs
    saved = Checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").tensors
    assert saved["model.domain_padding.reference"].tolist() == [17, 17]  # the training grid's period is kept
