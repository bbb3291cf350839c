import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers import PointwiseKAN, PointwiseLinear
from oplearn.layers.kan import update_grids
from oplearn.models import FNO, build


def toy_function(x):
    """The KAN paper's f(x, y) = exp(sin(pi x) + y^2), on (N, 2) -> (N, 1)."""
    return torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:] ** 2)


def lbfgs(model, x, y, steps):
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, history_size=10, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-32, tolerance_change=1e-32)

    def closure():
        optimizer.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)
    with torch.no_grad():
        return (model(x) - y).square().mean().sqrt().item()


def test_kan_is_pointwise_on_channels_with_or_without_space():
    torch.manual_seed(0)
    model = build("kan", in_channels=3, out_channels=2, widths=[4, 5], basis="rbf")
    assert [layer.in_features for layer in model.layers] == [3, 4, 5]
    points = torch.rand(6, 3) * 2 - 1
    field = points.T.reshape(1, 3, 2, 3)  # the same six points laid out on a 2x3 grid
    torch.testing.assert_close(model(field), model(points).T.reshape(1, 2, 2, 3))
    with pytest.raises(ShapeError, match=r"KAN expects \(batch, 3, \*spatial\)"):
        model(torch.randn(4, 2))
    with pytest.raises(ConfigError, match="positive"):
        build("kan", in_channels=2, out_channels=1, widths=[0])
    with pytest.raises(ConfigError, match="unknown KAN basis"):
        build("kan", in_channels=2, out_channels=1, basis="wavelet")


@pytest.mark.filterwarnings("ignore:KANLinear")  # the hidden values leave [-1, 1] before the grid update
def test_toy_function_fits_and_grid_extension_keeps_improving():
    torch.manual_seed(0)
    x = torch.rand(400, 2, dtype=torch.float64) * 2 - 1
    y = toy_function(x)
    model = build("kan", in_channels=2, out_channels=1, widths=[1], grid_size=3).double()
    start = (model(x) - y).square().mean().sqrt().item()
    coarse = lbfgs(model, x, y, steps=25)
    model.update_grid(x)
    model.extend_grid(10)
    fine = lbfgs(model, x, y, steps=25)
    print("toy", start, coarse, fine)
    assert start > 1.0 and coarse < 0.05 and fine < 2e-3 and fine < coarse / 10


def test_model_grid_update_refits_each_layer_on_its_own_inputs():
    torch.manual_seed(1)
    model = build("kan", in_channels=2, out_channels=1, widths=[3])
    x = torch.rand(300, 2) * 0.8 + 0.1
    model.update_grid(x)
    first, second = model.layers
    torch.testing.assert_close(first.basis.interior[:, 0], x.min(0).values)
    hidden = first(x)  # computed after the first layer's update, as the second layer saw it
    torch.testing.assert_close(second.basis.interior[:, -1], hidden.max(0).values)
    model.update_grid(x, grid_eps=1.0, margin=0.1)  # every layer: uniform, 10% of its input range past each end
    low, high = x.min(0).values, x.max(0).values
    torch.testing.assert_close(first.basis.grid_range(), (low - 0.1 * (high - low), high + 0.1 * (high - low)))
    assert first.basis.is_uniform() and second.basis.is_uniform()


def test_model_prune_removes_hidden_nodes_without_inputs():
    torch.manual_seed(2)
    model = build("kan", in_channels=2, out_channels=2, widths=[3])
    first, second = model.layers
    with torch.no_grad():
        first.coefficients[1] = 0  # hidden node 1 gets no input
        first.base_weight[1] = 0
    report = model.prune(threshold=1e-6)
    assert report == {"edges_kept": 2 * 2 + 2 * 2, "edges_pruned": 2 + 2, "dead_hidden": [[1]]}
    assert not second.edge_mask[:, 1].any()


def tiny_operator_problem(n, samples=12, seed=0):
    """Inputs: random trigonometric polynomials on the periodic grid j/n; target: a nonlinear, nonlocal,
    shift-equivariant map of them (a smoothing plus a square)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.arange(n) / n
    k = torch.arange(1, 4)
    amplitudes = torch.randn(samples, 2, 3, generator=generator) / k
    a = (amplitudes[:, 0, :, None] * torch.sin(2 * torch.pi * k[:, None] * x)
         + amplitudes[:, 1, :, None] * torch.cos(2 * torch.pi * k[:, None] * x)).sum(1, keepdim=True)
    smoothed = (amplitudes[:, 0, :, None] * torch.sin(2 * torch.pi * k[:, None] * x)
                + amplitudes[:, 1, :, None] * torch.cos(2 * torch.pi * k[:, None] * x)) / k[:, None] ** 2
    return a, smoothed.sum(1, keepdim=True) + 0.5 * a**2


def test_kan_fno_is_a_config_change_that_trains_at_any_resolution():
    torch.manual_seed(11)
    model = build("fno", in_channels=1, out_channels=1, modes=(4,), width=8, n_layers=2, projection_channels=8,
                  mixer="kan", kan_grid_size=4, grid=False)
    kan_maps = [m for m in model.modules() if isinstance(m, PointwiseKAN)]
    assert len(kan_maps) == 1 + 2 + 2  # lifting, one per block, two in the projection
    assert not any(isinstance(m, (torch.nn.Conv1d, PointwiseLinear)) for m in model.modules())
    a, u = tiny_operator_problem(32)
    assert update_grids(model, a) == 5  # grids moved to the values each map sees: no range warning
    coefficients = model.lifting.kan.coefficients
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(80):
        if step % 20 == 0:  # follow the drifting hidden values; coefficients are refit in place
            update_grids(model, a)
        optimizer.zero_grad()
        loss = (model(a) - u).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print("kan-fno losses", losses[0], losses[-1])
    assert losses[-1] < losses[0] / 4 and model.lifting.kan.coefficients is coefficients
    fine_a, fine_u = tiny_operator_problem(64)
    with torch.no_grad():
        coarse, fine = model(a), model(fine_a)
    coarse_error, fine_error = (coarse - u).square().mean(), (fine - fine_u).square().mean()
    change = (fine[..., ::2] - coarse).norm() / coarse.norm()  # the same function seen on two grids
    print("kan-fno coarse/fine", coarse_error.item(), fine_error.item(), change.item())
    assert fine.shape == (12, 1, 64) and fine_error < 2 * coarse_error and change < 0.05


def test_mixer_options_are_checked_and_default_is_the_linear_fno():
    torch.manual_seed(4)
    linear = FNO(1, 1, modes=(4,), width=8)
    torch.manual_seed(4)
    explicit = FNO(1, 1, modes=(4,), width=8, mixer="linear")
    assert list(linear.state_dict()) == list(explicit.state_dict())
    for a, b in zip(linear.state_dict().values(), explicit.state_dict().values()):
        assert torch.equal(a, b)
    chebyshev = FNO(1, 1, modes=(4,), width=8, mixer="kan", kan_basis="chebyshev", kan_order=3)
    assert chebyshev.lifting.kan.basis.name == "chebyshev" and chebyshev.lifting.kan.basis.n_basis == 4
    assert chebyshev(torch.randn(2, 1, 16)).shape == (2, 1, 16)
    with pytest.raises(ConfigError, match="unknown mixer 'mlp'; choose one of: linear, kan"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), mixer="mlp")
    with pytest.raises(ConfigError, match="only with mixer='kan'"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), kan_basis="rbf")
    with pytest.raises(ConfigError, match="does not take grid_size"):
        build("fno", in_channels=1, out_channels=1, modes=(4,), mixer="kan", kan_basis="chebyshev", kan_grid_size=3)
