"""Linearized models (first-order Taylor in the weights), task vectors, the `linearized` recipe."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call

from oplearn.errors import ConfigError
from oplearn.models import Operator, build
from oplearn.models.linearize import Linearized, TaskVector, linearize
from oplearn.train import fit
from oplearn.train.checkpoint import Checkpoint
from oplearn.train.evaluation import evaluate_run
from oplearn.train.recipes import load_run


def small_fno(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return build("fno", in_channels=1, out_channels=2, modes=(3, 4), width=6, n_layers=2, padding=0.1,
                 projection_channels=10).to(dtype)


class TanhGELUNet(Operator):
    """An unregistered operator around a plain network of mixed activations: ``(batch, 5) -> (batch, 3)``."""

    def __init__(self):
        super().__init__(5, 3)
        self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return TanhGELUNet().double()


def shifted(model, direction, step):
    """``f(x; theta_0 + step * direction)`` as a function of x."""
    params = {name: p.detach() + step * direction[name] for name, p in model.named_parameters()}
    return lambda x: functional_call(model, params, (x,))


def random_direction(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in model.named_parameters()}


CASES = [(small_fno, (3, 1, 12, 10)), (small_mlp, (7, 5))]


@pytest.mark.parametrize("make, shape", CASES)
def test_linearized_model_equals_the_model_at_theta0(make, shape):
    model = make()
    x = torch.randn(shape, dtype=torch.float64)
    lin = linearize(model)
    torch.testing.assert_close(lin(x), model(x), rtol=0, atol=1e-14)
    assert all(not p.requires_grad for p in lin.base.parameters())
    assert all(p.requires_grad for p in lin.model.parameters())


@pytest.mark.parametrize("make, shape", CASES)
def test_linearized_model_is_the_first_order_taylor_expansion(make, shape):
    model = make()
    x = torch.randn(shape, dtype=torch.float64)
    direction = random_direction(model)
    lin = linearize(model)
    f0 = model(x).detach()

    def errors(step):
        TaskVector({k: step * v for k, v in direction.items()}).apply_to(lin)  # theta = theta0 + step d
        with torch.no_grad():
            linear = lin(x)
            exact = shifted(model, direction, step)(x)
        lin.model.load_state_dict(lin.base.state_dict())  # back to theta0
        return linear, (linear - exact).norm().item()

    steps = [1e-2, 5e-3, 2.5e-3]
    results = [errors(h) for h in steps]
    # Linear in the step exactly: f_lin(2h) - f0 = 2 (f_lin(h) - f0).
    torch.testing.assert_close(results[0][0] - f0, 2 * (results[1][0] - f0), rtol=1e-10, atol=1e-13)
    # The remainder f - f_lin is second order: halving the step divides it by ~4.
    ratios = [results[i][1] / results[i + 1][1] for i in range(2)]
    assert all(3.6 < r < 4.4 for r in ratios), ratios


@pytest.mark.parametrize("make, shape", CASES)
def test_gradient_of_linearized_model_is_the_jacobian_at_theta0(make, shape):
    model = make()
    x = torch.randn(shape, dtype=torch.float64)
    cotangent = torch.randn_like(model(x))
    # J(theta0)^T v from the original network.
    reference = torch.autograd.grad((model(x) * cotangent).sum(), list(model.parameters()))
    lin = linearize(model)

    def gradient():
        lin.zero_grad()
        (lin(x) * cotangent).sum().backward()
        return [p.grad.clone() for p in lin.model.parameters()]

    at_theta0 = gradient()
    TaskVector({k: 0.5 * v for k, v in random_direction(model).items()}).apply_to(lin)  # far from theta0
    far = gradient()
    for want, got0, got1 in zip(reference, at_theta0, far):
        torch.testing.assert_close(got0, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got1, want, rtol=1e-12, atol=1e-12)  # constant in theta
    # ... whereas the network's own gradient at the far point differs.
    moved = copy.deepcopy(lin.model)
    own = torch.autograd.grad((moved(x) * cotangent).sum(), list(moved.parameters()))
    assert max((a - b).abs().max().item() for a, b in zip(own, reference)) > 1e-3


def test_task_vector_round_trip_is_exact_in_float32():
    base, finetuned = small_fno(0, torch.float32), small_fno(1, torch.float32)
    tau = TaskVector.between(base, finetuned)
    restored = tau.apply_to(copy.deepcopy(base))
    for (name, want), got in zip(finetuned.named_parameters(), restored.parameters()):
        assert torch.equal(got, want), name
    other = TaskVector.between(base, small_fno(2, torch.float32))
    for name in tau:
        assert torch.equal((tau + other - other)[name], tau[name])
        assert torch.equal((2 * tau)[name], (tau + tau)[name])
        assert torch.equal((-tau)[name], (tau * -1)[name])
        assert torch.equal((tau - tau)[name], torch.zeros_like(tau[name]))
    assert set(tau) == {name for name, _ in base.named_parameters()} and tau.norm() > 0
    # On a linearized model the vector moves the tangent-space weights, not the base.
    lin = linearize(base)
    tau.apply_to(lin)
    assert all(torch.equal(a, b) for a, b in zip(lin.model.parameters(), finetuned.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(lin.base.parameters(), base.parameters()))
    assert TaskVector.between(base, lin).norm() == pytest.approx(tau.norm(), rel=1e-12)


def test_task_vectors_of_different_architectures_are_one_line_errors():
    tau = TaskVector.between(small_mlp(0), small_mlp(1))
    fno = small_fno()
    with pytest.raises(ConfigError, match="same parameters"):
        TaskVector.between(small_mlp(0), fno)
    with pytest.raises(ConfigError, match="lacks"):
        tau.apply_to(fno)
    with pytest.raises(ConfigError, match="different architectures"):
        tau + TaskVector.between(fno, small_fno(1))


def test_linearized_recipe_trains_in_tangent_space_and_reloads(tiny_run, tmp_path):
    config, run = tiny_run
    stage = copy.deepcopy(config)
    stage["stage"] = {"base_run": str(run), "recipe": "linearized"}
    stage["train"].update(epochs=3, lr=0.003)
    results = fit(stage, tmp_path / "lin", progress=False)
    first = json.loads((run / "results.json").read_text())["test"]["rel_l2"]
    assert results["test"]["rel_l2"] < first  # tangent-space training improves the base model
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "lin" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    # The checkpoint holds theta_0 unchanged (= the base run's weights) and the trained theta.
    base_weights = {k.removeprefix("model."): v for k, v in Checkpoint(run / "checkpoints" / "last.safetensors")
                    .tensors.items() if k.startswith("model.")}
    _, model, task = load_run(tmp_path / "lin", "cpu")
    assert isinstance(model, Linearized)
    for name, value in model.base.state_dict().items():
        assert torch.equal(value, base_weights[name]), name
    assert TaskVector.between(base_weights, model).norm() > 0
    assert evaluate_run(tmp_path / "lin", device="cpu")["test"]["rel_l2"] == pytest.approx(
        results["test"]["rel_l2"], rel=1e-5)
    twice = copy.deepcopy(stage)
    twice["stage"]["base_run"] = str(tmp_path / "lin")
    with pytest.raises(ConfigError, match="single-model base run"):
        fit(twice, tmp_path / "lin2", progress=False)


def test_linearized_recipe_needs_the_base_model_section(tiny_run, tmp_path):
    config, run = tiny_run
    stage = copy.deepcopy(config)
    stage["stage"] = {"base_run": str(run), "recipe": "linearized"}
    stage["model"]["width"] = 12
    with pytest.raises(ConfigError, match="model section unchanged"):
        fit(stage, tmp_path / "lin", progress=False)
