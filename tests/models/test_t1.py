"""T1 (Transform Once): shapes, variance-preserving initialisation, grid independence, gradients, CLI training."""

import json
import math

import pytest
import torch
import yaml
from helpers import run_cli

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.frequency_transforms import forward_transform, inverse_transform
from oplearn.models import build
from oplearn.models.t1 import T1, ChannelMixing, FrequencyBlock, ModeMixing, activation_gain


@pytest.mark.parametrize("transform", ["dct", "dft"])
@pytest.mark.parametrize("modes, sizes", [((6,), (20,)), ((4, 5), (12, 11)), ((3, 2, 3), (8, 6, 7))])
def test_any_dimension_transform_and_output_map(transform, modes, sizes):
    torch.manual_seed(0)
    for projection_channels in (0, 8):
        model = build("t1", 2, 3, transform=transform, modes=modes, width=8, n_layers=2,
                      projection_channels=projection_channels)
        for scale in (1, 2):
            x = torch.randn(2, 2, *[n * scale for n in sizes])
            y = model(x)
            assert y.shape == (2, 3, *x.shape[2:]) and y.dtype == x.dtype and torch.isfinite(y).all()


def test_the_lean_path_computes_only_kept_modes_and_its_output_is_band_limited():
    torch.manual_seed(1)
    model = T1(1, 2, modes=(3, 4), transform="dct", width=8, n_layers=2, mode_groups=1)
    outside_blocks = 8 * 1 + 8 * 3 * 4 + 2 * 8  # lifting, per-mode bias, projection
    assert sum(p.numel() for p in model.parameters()) == outside_blocks + 2 * (3 * 3 + 4 * 4 + 8 * 8)
    per_mode = T1(1, 2, modes=(3, 4), transform="dct", width=8, n_layers=2)  # the default: a map per mode
    assert sum(p.numel() for p in per_mode.parameters()) == outside_blocks + 2 * (3 * 3 + 4 * 4 + 8 * 8 * 3 * 4)
    y = model(torch.randn(2, 1, 10, 12)).double()
    coefficients = forward_transform(y, "dct", (10, 12))
    assert coefficients[..., 3:, :].abs().max() < 1e-5 and coefficients[..., 4:].abs().max() < 1e-5


def test_activation_gain_gives_unit_mean_square_on_standard_normal_inputs():
    assert activation_gain("relu") == pytest.approx(math.sqrt(2), abs=1e-6)  # E[relu(G)^2] = 1/2
    g = torch.randn(400000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name in ("gelu", "silu", "tanh"):
        block = FrequencyBlock(4, (3,), name, (1,))
        assert abs((block.gain * block.activation(g)).square().mean() - 1) < 0.01, name


@pytest.mark.parametrize("activation", ["gelu", "relu", "tanh"])
@pytest.mark.parametrize("mode_groups", [(1, 1), (3, 3), (12, 12)])
def test_a_block_keeps_the_mean_square_of_white_noise_at_initialisation(activation, mode_groups):
    # The rule: orthogonal square maps (energy kept exactly), the activation scaled to unit mean square on
    # N(0, 1), the residual averaged by 1/sqrt(2). Without the gain the ratio is (1 + E sigma^2)/2 (0.71 for
    # gelu); with nn.Linear's default init the maps alone would shrink the energy about 27-fold.
    torch.manual_seed(2)
    for _ in range(4):
        z = torch.randn(8, 32, 12, 12)
        block = FrequencyBlock(32, (12, 12), activation, mode_groups)
        ratio = (block(z).square().mean() / z.square().mean()).item()
        assert abs(ratio - 1) < 0.03, ratio


def test_the_linear_maps_keep_energy_exactly_for_every_input():
    torch.manual_seed(3)
    z = torch.randn(2, 16, 5, 7) * torch.linspace(0.1, 3, 7)  # far from white
    mixed = ChannelMixing(16, 16, (5, 7))(ModeMixing((5, 7))(z))
    torch.testing.assert_close(mixed.square().sum(), z.square().sum(), rtol=1e-4, atol=0)


def test_grouped_channel_maps_equal_one_matrix_per_mode_block():
    torch.manual_seed(4)
    mixing = ChannelMixing(3, 2, (4, 5), groups=(2, 2)).double()
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    runs = ([0, 0, 1, 1], [0, 0, 0, 1, 1])  # floor(k * 2 / n) per axis
    expected = torch.stack([torch.stack([mixing.weight[2 * runs[0][i] + runs[1][j]] @ z[:, :, i, j].T
                                         for j in range(5)], dim=-1) for i in range(4)], dim=-2)
    torch.testing.assert_close(mixing(z), expected.permute(1, 0, 2, 3), rtol=1e-12, atol=1e-12)


def _dct_band_limited(n, coefficients):
    """The cosine series with these ``(channels, m, m)`` coefficients on the cell centres of n x n."""
    return inverse_transform(coefficients[None], "dct", coefficients.shape[1:], (n, n))


def test_a_band_limited_input_gives_the_same_output_on_every_grid():
    # DCT: cell centres (j + 1/2)/n; those of n are every third from index 1 of 3n. DFT: j/n, every other of 2n.
    generator = torch.Generator().manual_seed(5)
    cosines = torch.randn(2, 6, 6, dtype=torch.float64, generator=generator) / torch.arange(1, 7) ** 1.5
    model = T1(2, 1, modes=(4, 4), transform="dct", width=8, n_layers=3).double()
    coarse, fine = model(_dct_band_limited(8, cosines)), model(_dct_band_limited(24, cosines))
    torch.testing.assert_close(fine[..., 1::3, 1::3], coarse, rtol=0, atol=1e-12)
    assert coarse.abs().max() > 0.05
    fourier = torch.randn(2, 2 * 5, 5, dtype=torch.complex128, generator=generator)
    periodic = T1(2, 1, modes=(3, 3), transform="dft", width=8, n_layers=3, projection_channels=8).double()
    inputs = {n: inverse_transform(fourier[None], "dft", (5, 5), (n, n)) for n in (12, 24)}
    coarse, fine = periodic(inputs[12]), periodic(inputs[24])
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=0, atol=1e-12)
    assert coarse.abs().max() > 0.05


@pytest.mark.parametrize("transform", ["dct", "dft"])
def test_gradcheck_tiny_model(transform):
    torch.manual_seed(6)
    model = T1(1, 1, modes=(2, 3), transform=transform, width=4, n_layers=2, mode_groups=2).double()
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    model(x).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown transform 'dst'; choose one of: dft, dct"):
        build("t1", 1, 1, modes=(4, 4), transform="dst")
    with pytest.raises(ConfigError, match=r"mode_groups must be between 1 and the fewest kept modes on an axis \(3\)"):
        build("t1", 1, 1, modes=(4, 3), mode_groups=4)
    assert len(build("t1", 1, 1, modes=(4, 3), transform="dft").blocks[0].channels.weight) == 8 * 3
    with pytest.raises(ConfigError, match="activation"):
        build("t1", 1, 1, modes=(4,), activation="swish2")
    with pytest.raises(ConfigError, match="width must be even"):
        build("t1", 1, 1, modes=(4,), transform="dft", width=5, projection_channels=8)
    model = build("t1", 1, 1, modes=(8, 8), width=4, n_layers=1)
    with pytest.raises(ShapeError, match=r"T1 expects \(batch, 1, 2 spatial axes\)"):
        model(torch.randn(1, 1, 32))
    with pytest.raises(ShapeError, match="spatial axis 0 has 6 points; transform=dct with modes=8 needs at least 8"):
        model(torch.randn(1, 1, 6, 32))


@pytest.fixture(scope="module")
def darcy_17(tmp_path_factory):
    """24 training and 8 test Darcy samples on 17 x 17, written by ``oplearn generate``."""
    from oplearn.cli import main

    root = tmp_path_factory.mktemp("darcy_17")
    for split, n, seed in (("train", 24, 1), ("test", 8, 2)):
        assert main(["generate", "darcy", "--n", str(n), "--resolution", "17", "--seed", str(seed),
                     "--workers", "1", "--out", str(root / f"{split}.h5")]) == 0
    return root


@pytest.mark.parametrize("transform", ["dct", "dft"])
def test_trains_through_the_cli(transform, darcy_17, tmp_path, capsys):
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(darcy_17 / "train.h5")}, "test": {"path": str(darcy_17 / "test.h5")}},
              "model": {"name": "t1", "transform": transform, "modes": [6, 6], "width": 16, "n_layers": 2},
              "train": {"epochs": 8, "batch_size": 6, "lr": 0.005}}
    path = tmp_path / "t1.yaml"
    path.write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 8
    assert metrics[-1]["test_rel_l2"] < 0.7 * metrics[0]["test_rel_l2"], metrics
    assert metrics[-1]["test_rel_l2"] < 0.3  # measured 0.19 (dct) and 0.20 (dft) after 8 epochs
