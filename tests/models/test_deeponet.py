"""DeepONet, POD-DeepONet and MIONet: the sum over basis functions, query paths, POD, strategies, gradients."""

import pytest
import torch

from oplearn.data.dataset import FieldDataset
from oplearn.errors import ConfigError
from oplearn.models import build


def _count(module):
    return sum(p.numel() for p in module.parameters())


def _mlp(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def _deeponet(k=1, **hyper):
    torch.manual_seed(0)
    settings = dict(sensors=[12], dim=1, basis=5, branch_layers=[16], trunk_layers=[16], activation="tanh")
    return build("deeponet", 1, k, **{**settings, **hyper}).double()


@pytest.mark.parametrize("strategy", ["independent", "split_branch", "split_trunk", "split_both"])
def test_output_is_the_explicit_sum_over_basis_functions(strategy):
    model = _deeponet(k=2, multi_output=strategy)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    x = torch.randn(3, 1, 12, dtype=torch.float64)
    y = torch.rand(7, 1, dtype=torch.float64)
    b = model.coefficients(x)            # (B, K, p)
    t = model.basis_functions(y)         # (Q, K, p)
    explicit = torch.zeros(3, 2, 7, dtype=torch.float64)
    for n in range(3):
        for k in range(2):
            for q in range(7):
                explicit[n, k, q] = sum(b[n, k, i] * t[q, k, i] for i in range(5)) + model.bias[k]
    assert torch.allclose(model(x, queries=y.T), explicit, atol=1e-12)


def test_cartesian_and_per_sample_queries_agree():
    model = _deeponet(k=2, trunk_features="fourier", output_transform="dirichlet")
    x = torch.randn(4, 1, 12, dtype=torch.float64)
    y = torch.rand(1, 9, dtype=torch.float64)
    shared = model(x, queries=y)
    per_sample = model(x, queries=y.expand(4, 1, 9))
    assert torch.allclose(shared, per_sample, atol=1e-12)
    # grid call: queries are the input grid's nodes; the same as passing them explicitly
    grid = torch.linspace(0, 1, 12, dtype=torch.float64)[None]
    assert torch.allclose(model(x), model(x, queries=grid), atol=1e-12)
    # point data: the points themselves are the queries
    assert torch.allclose(model(x, coords=grid.expand(4, 1, 12)), model(x), atol=1e-12)


@pytest.mark.parametrize("strategy", ["independent", "split_branch", "split_trunk", "split_both"])
def test_multi_output_strategies_have_their_parameter_counts(strategy):
    k, p, m = 3, 5, 12
    model = _deeponet(k=k, multi_output=strategy)
    branch = {"independent": k * _mlp([m, 16, p]), "split_branch": _mlp([m, 16, k * p]),
              "split_trunk": _mlp([m, 16, p]), "split_both": _mlp([m, 16, k * p])}[strategy]
    trunk = {"independent": k * _mlp([1, 16, p]), "split_branch": _mlp([1, 16, p]),
             "split_trunk": _mlp([1, 16, k * p]), "split_both": _mlp([1, 16, k * p])}[strategy]
    assert _count(model) == branch + trunk + k


def test_gradients_match_finite_differences():
    model = _deeponet(k=2, multi_output="split_trunk", trunk_features="fourier")
    x = torch.randn(2, 1, 12, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, q: model(a, queries=q), (x, y))
    mio = build("mionet", 3, 1, sensors=[6], dim=1, basis=4, branch_layers=[8], trunk_layers=[8],
                input_groups=[1, 2], activation="tanh").double()
    assert torch.autograd.gradcheck(lambda a: mio(a), (torch.randn(2, 3, 6, dtype=torch.float64,
                                                                   requires_grad=True),))


def test_mionet_merges_one_branch_per_input_function_by_product():
    model = build("mionet", 3, 1, sensors=[6], dim=1, basis=4, branch_layers=[8], trunk_layers=[8],
                  input_groups=[1, 2]).double()
    assert len(model.branches) == 2
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    first = model.branches[0][0](x[:, :1])
    second = model.branches[1][0](x[:, 1:])
    assert torch.allclose(model.coefficients(x)[:, 0], first * second)
    with pytest.raises(ConfigError, match="input_groups"):
        build("mionet", 3, 1, sensors=[6], dim=1, input_groups=[1, 1])


def test_cnn_branch_and_resampled_sensors():
    model = build("deeponet", 1, 1, sensors=[9, 9], dim=2, branch="cnn", basis=4, conv_channels=[4, 8],
                  branch_layers=[16], trunk_layers=[16]).double()
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    fine = torch.nn.functional.interpolate(x, size=(17, 17), mode="bilinear", align_corners=True)
    # the finer input is sampled at the training sensors (every other node), the output is on the finer grid
    assert torch.allclose(model(fine)[..., ::2, ::2], model(x), atol=1e-12)
    with pytest.raises(ConfigError, match="tied to its"):
        build("deeponet", 1, 1, sensors=[20], dim=2)(torch.randn(1, 1, 21), coords=torch.rand(1, 2, 21))


def _grid_data(n=20, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, size)
    a = torch.randn(n, 3, generator=generator)
    inputs = sum(a[:, j, None] * torch.sin((j + 1) * torch.pi * x) for j in range(3))[:, None]
    outputs = torch.cumsum(inputs, -1) / size + 0.5
    return FieldDataset(inputs, outputs)


def test_pod_trunk_reproduces_the_projection_of_the_training_outputs():
    train = _grid_data()
    model = build("pod_deeponet", 1, 1, basis=3, branch_layers=[8])
    updates = model.fit_to_data(train)  # builds the branch and the modes: move the model after it
    model.double()
    assert updates == {"sensors": [16], "dim": 1, "output_grid": [16]}
    u = train.batch(range(len(train))).targets.double()
    flat = u.flatten(1)
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    projection = mean + (flat - mean) @ vh[:3].T @ vh[:3]
    coefficients = model.project(u)
    fields = torch.cat([model.pod_mean[None], model.pod_modes])
    assert coefficients.shape == (len(u), 1, 3)
    rebuilt = torch.einsum("bkp,pkq->bkq", torch.cat([torch.ones(len(u), 1, 1, dtype=u.dtype), coefficients], -1),
                           fields)
    assert torch.allclose(rebuilt.flatten(1), projection, atol=1e-10)
    # the outputs span three modes: the projection is the outputs themselves
    assert torch.allclose(rebuilt, u, atol=1e-5)
    # the modes at the grid nodes as query points are the modes
    nodes = torch.linspace(0, 1, 16, dtype=torch.float64)[None]
    assert torch.allclose(model.modes_at(nodes)[1:], model.pod_modes, atol=1e-12)


def _two_channel_data(n=30, size=16, seed=0):
    """Channel 0 spans sin(pi x), sin(2 pi x); channel 1 spans cos(pi x), x^2: two modes each, four jointly."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, size, dtype=torch.float64)
    a = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    first = a[:, :1] * torch.sin(torch.pi * x) + a[:, 1:2] * torch.sin(2 * torch.pi * x)
    second = a[:, 2:3] * torch.cos(torch.pi * x) + a[:, 3:4] * x ** 2 + 1.0
    return FieldDataset(a[:, :1, None] * torch.ones(size, dtype=torch.float64), torch.stack([first, second], 1))


@pytest.mark.parametrize("per_channel", [True, False])
def test_pod_modes_per_channel_are_each_channels_own_projection(per_channel):
    train = _two_channel_data()
    model = build("pod_deeponet", 1, 2, basis=2, branch_layers=[8], per_channel=per_channel)
    model.fit_to_data(train)
    model.double()
    u = train.batch(range(len(train))).targets.double()
    coefficients = model.project(u)
    fields = torch.cat([model.pod_mean[None], model.pod_modes])
    rebuilt = torch.einsum("bkp,pkq->bkq", torch.cat([torch.ones(len(u), 2, 1, dtype=u.dtype), coefficients], -1),
                           fields)
    if per_channel:  # each channel's own two modes: its SVD projection, here the data themselves
        for k in range(2):
            flat = u[:, k]
            _, _, vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
            expected = flat.mean(0) + (flat - flat.mean(0)) @ vh[:2].T @ vh[:2]
            assert torch.allclose(rebuilt[:, k], expected, atol=1e-6)  # the modes are float32 buffers
        assert torch.allclose(rebuilt, u, atol=1e-6)
    else:  # two joint modes cannot hold four independent directions
        assert (rebuilt - u).norm() / u.norm() > 0.05
    # the branch gives K*p coefficients per channel set, or p shared ones
    assert model.coefficients(torch.zeros(1, 1, 16).double()).shape == (1, 2, 2)
    assert model.branches[0][0](torch.zeros(1, 1, 16).double()).shape == (1, 4 if per_channel else 2)
    assert model(train.batch([0, 1]).inputs.double()).shape == (2, 2, 16)


def test_pod_modes_are_buffers_saved_with_the_state_and_rebuilt():
    train = _grid_data()
    model = build("pod_deeponet", 1, 1, basis=2, branch_layers=[8])
    updates = model.fit_to_data(train)
    assert "pod_modes" in model.state_dict() and "pod_mean" in model.state_dict()
    again = build("pod_deeponet", 1, 1, basis=2, branch_layers=[8], **updates)
    again.load_state_dict(model.state_dict())
    x = train.batch([0, 1]).inputs
    assert torch.equal(again(x), model(x))
    with pytest.raises(ConfigError, match="exceeds"):
        build("pod_deeponet", 1, 1, basis=30).fit_to_data(train)


def test_fit_to_data_refuses_other_sensors_and_unfitted_calls():
    train = _grid_data()
    with pytest.raises(ConfigError, match="does not match"):
        build("deeponet", 1, 1, sensors=[8]).fit_to_data(train)
    with pytest.raises(ConfigError, match="no sensor grid"):
        build("deeponet", 1, 1)(torch.randn(1, 1, 16))
