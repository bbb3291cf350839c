"""G-FNO: rotating/reflecting the input array rotates/reflects the output; a plain FNO does not."""

import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import build

ROTATIONS = [lambda x, k=k: torch.rot90(x, k, dims=(-2, -1)) for k in (1, 2, 3)]
REFLECTIONS = [
    lambda x: torch.flip(x, dims=(-1,)),
    lambda x: torch.flip(x, dims=(-2,)),
    lambda x: x.transpose(-2, -1),  # reflection about the main diagonal
    lambda x: torch.rot90(x, 1, dims=(-2, -1)).transpose(-2, -1),  # ... and the anti-diagonal
]


def equivariance_error(model, transforms, n, seed=0):
    """max over transforms T of ||model(T x) - T model(x)|| / ||model(x)|| on a random float64 input."""
    torch.manual_seed(seed)
    x = torch.randn(2, 2, n, n, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        return max(((model(t(x)) - t(y)).norm() / y.norm()).item() for t in transforms)


def small(name, **hyper):
    torch.manual_seed(0)
    options = {"in_channels": 2, "out_channels": 1, "modes": 4, "width": 4, "n_layers": 3} | hyper
    return build(name, **options).double()


@pytest.mark.parametrize("n", [16, 24, 32])
def test_p4_model_commutes_with_quarter_turns_at_every_resolution(n):
    assert equivariance_error(small("gfno", group="p4"), ROTATIONS, n) < 1e-10


@pytest.mark.parametrize("n", [16, 24, 32])
def test_p4m_model_commutes_with_rotations_and_reflections(n):
    model = small("gfno", group="p4m", pooling="max")
    assert equivariance_error(model, ROTATIONS + REFLECTIONS, n) < 1e-10


def test_the_same_test_fails_where_the_symmetry_is_absent():
    # A plain FNO (without grid or padding, so only its kernels can break the symmetry) is not equivariant.
    fno = small("fno", modes=(4, 4), grid=False)
    assert equivariance_error(fno, ROTATIONS, 16) > 1e-2
    # p4 knows nothing about reflections.
    assert equivariance_error(small("gfno", group="p4"), REFLECTIONS, 16) > 1e-2
    # Grid coordinates break the symmetry, which is why they default off.
    assert equivariance_error(small("gfno", grid=True), ROTATIONS, 16) > 1e-3


def test_padding_keeps_the_symmetry():
    """Zeros appended at the end of a periodic axis surround the square on all sides of the torus."""
    model = small("gfno", group="p4m", padding=0.25)
    assert equivariance_error(model, ROTATIONS + REFLECTIONS, 16) < 1e-10


def test_commutes_with_periodic_translations():
    model = small("gfno", group="p4m")
    shifts = [lambda x: torch.roll(x, shifts=(5, -3), dims=(-2, -1)), lambda x: torch.roll(x, 1, dims=-1)]
    assert equivariance_error(model, shifts, 24) < 1e-10


def test_shapes_padding_gradients_and_config_modes():
    model = build("gfno", in_channels=1, out_channels=3, modes=[4, 4], width=4, n_layers=2, group="p4m",
                  padding=0.1, grid=True)
    x = torch.randn(2, 1, 12, 12)
    out = model(x)
    assert out.shape == (2, 3, 12, 12)
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert not parameter.is_complex(), name
    assert model(torch.randn(1, 1, 7, 7)).shape == (1, 3, 7, 7)  # 7 = 2m-1 points hold modes=4


def test_bad_configs_and_inputs_are_one_line_errors():
    errors = []
    with pytest.raises(ConfigError, match="unknown group 'c4'; choose one of: p4, p4m") as error:
        build("gfno", in_channels=1, out_channels=1, modes=4, group="c4")
    errors.append(error)
    with pytest.raises(ConfigError, match=r"modes must be one positive integer m or \(m, m\)") as error:
        build("gfno", in_channels=1, out_channels=1, modes=(4, 6))
    errors.append(error)
    with pytest.raises(ConfigError, match="unknown group pooling 'median'"):
        build("gfno", in_channels=1, out_channels=1, modes=4, pooling="median")
    model = build("gfno", in_channels=1, out_channels=1, modes=6, width=2, n_layers=1)
    with pytest.raises(ShapeError, match="GFNO needs a square grid .* got 16x20") as error:
        model(torch.zeros(1, 1, 16, 20))
    errors.append(error)
    with pytest.raises(ShapeError, match="a 10x10 grid holds at most modes=5, got modes=6") as error:
        model(torch.zeros(1, 1, 10, 10))
    errors.append(error)
    with pytest.raises(ShapeError, match=r"GFNO expects \(batch, 1, n, n\)"):
        model(torch.zeros(1, 2, 16, 16))
    assert all("\n" not in str(e.value) for e in errors)
