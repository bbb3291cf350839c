import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.models import FNO, build


@pytest.mark.parametrize("modes, sizes", [((6,), (24,)), ((4, 5), (12, 10)), ((3, 3, 3), (8, 8, 6))])
def test_any_dimension_and_grid_size(modes, sizes):
    torch.manual_seed(0)
    model = build("fno", in_channels=2, out_channels=3, modes=modes, width=8, n_layers=2, padding=0.25)
    for scale in (1, 2):
        x = torch.randn(2, 2, *[n * scale for n in sizes])
        assert model(x).shape == (2, 3, *x.shape[2:])


def test_every_parameter_gets_a_gradient():
    model = FNO(1, 1, modes=(4, 4), width=8, n_layers=3, padding=0.1)
    model(torch.randn(2, 1, 16, 16)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_same_seed_same_weights_and_complex_weights_are_real_pairs():
    torch.manual_seed(5)
    first = FNO(1, 1, modes=(4, 4), width=8)
    torch.manual_seed(5)
    second = FNO(1, 1, modes=(4, 4), width=8)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
        assert not a.is_complex(), name


def test_padding_and_grid_change_the_function():
    torch.manual_seed(1)
    plain = FNO(1, 1, modes=(4, 4), width=8, grid=False)
    x = torch.randn(1, 1, 16, 16)
    padded = FNO(1, 1, modes=(4, 4), width=8, grid=False, padding=0.25)
    padded.load_state_dict(plain.state_dict())
    assert not torch.allclose(plain(x), padded(x))
    # Without grid channels and padding the operator commutes with periodic shifts.
    shifted = torch.roll(x, shifts=(3, 5), dims=(2, 3))
    torch.testing.assert_close(plain(shifted), torch.roll(plain(x), shifts=(3, 5), dims=(2, 3)), atol=1e-5, rtol=1e-5)
    with_grid = FNO(1, 1, modes=(4, 4), width=8, grid=True)
    assert not torch.allclose(with_grid(shifted), torch.roll(with_grid(x), shifts=(3, 5), dims=(2, 3)), atol=1e-3)


def test_build_rejects_unknown_names_and_bad_inputs():
    with pytest.raises(ConfigError, match="unknown model 'unett'; choose one of: afno, deeponet, .*, tfno, transolver, unet, uno$"):
        build("unett", in_channels=1, out_channels=1)
    with pytest.raises(ConfigError, match="unknown hyperparameter.*wdith"):
        build("fno", in_channels=1, out_channels=1, modes=(4, 4), wdith=3)
    with pytest.raises(ConfigError, match="modes"):
        build("fno", in_channels=1, out_channels=1)
    with pytest.raises(ConfigError, match="padding"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), padding=2)
    with pytest.raises(ConfigError, match="activation"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), activation="swish2")
    model = build("FNO", in_channels=1, out_channels=1, modes=(8, 8), width=4)
    with pytest.raises(ShapeError, match="expects"):
        model(torch.randn(1, 1, 32))
    with pytest.raises(ShapeError, match="needs at least 16"):
        model(torch.randn(1, 1, 10, 32))


def test_checkpointed_blocks_give_the_same_gradients_while_saving_fewer_tensors():
    torch.manual_seed(8)
    plain = FNO(1, 1, modes=(4, 4), width=8, n_layers=4, padding=0.1, projection_channels=8).double()
    checkpointed = FNO(1, 1, modes=(4, 4), width=8, n_layers=4, padding=0.1, projection_channels=8,
                       checkpoint_blocks=True).double()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    saved = {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            loss = model(x).square().mean()
        saved[name] = sum(sizes)
        loss.backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14, msg=name)
    assert saved["checkpointed"] < 0.5 * saved["plain"]


def test_padding_per_axis_pads_only_the_axes_asked_for():
    model = FNO(1, 1, modes=(3, 3, 3), width=4, n_layers=1, padding=[0.0, 0.0, 0.15])
    seen = []
    model.blocks[0].register_forward_hook(lambda module, args, output: seen.append(tuple(args[0].shape[2:])))
    assert model(torch.randn(1, 1, 8, 8, 40)).shape == (1, 1, 8, 8, 40)
    assert seen == [(8, 8, 45)]  # round(1.15 * 39) = 45 points on the time axis, none in space
    with pytest.raises(ConfigError, match="one per axis"):
        FNO(1, 1, modes=(3, 3), padding=[0.1, 0.1, 0.1])
