"""Loss balancing schemes, each invariant checked on the two-term toy L1 = (x-1)^2, L2 = 100 (y+2)^2 (SGD).

The toy is badly scaled: L2's curvature (200) limits the step size of fixed weights, so L1 converges slowly.
"""

import math

import pytest
import torch

from oplearn.errors import ConfigError, ShapeError
from oplearn.train.balancing import EPS, SCHEMES, make_balancer


class Toy:
    """x, y in float64 from (0, 0); ``step(balancer)`` takes one SGD step on sum_i w_i L_i, returns (L, g, w)."""

    def __init__(self, lr=0.009):
        self.params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.SGD([self.params], lr=lr)

    def losses(self):
        x, y = self.params
        return torch.stack([(x - 1) ** 2, 100 * (y + 2) ** 2])

    def step(self, balancer):
        losses = self.losses()
        norms = torch.stack([torch.autograd.grad(losses[i], self.params, retain_graph=True)[0].norm()
                             for i in range(2)])
        weights = balancer(losses.detach(), norms)
        self.optimizer.zero_grad()
        (weights.double() * losses).sum().backward()
        self.optimizer.step()
        return losses.detach(), norms, weights

    def run(self, balancer, steps):
        return [self.step(balancer) for _ in range(steps)]

    def steps_to(self, balancer, tol, budget):
        """Steps until L1 + L2 < tol (``budget`` if never)."""
        for k in range(budget):
            if self.losses().sum() < tol:
                return k
            self.step(balancer)
        return budget


# -- fixed --------------------------------------------------------------------------------------------


def test_fixed_returns_its_weights_detached_float32():
    balancer = make_balancer("fixed", [1.0, 0.25])
    assert not balancer.needs_gradient_norms
    for losses, _, weights in Toy().run(balancer, 10):
        assert weights.dtype == torch.float32 and not weights.requires_grad
        assert torch.equal(weights, torch.tensor([1.0, 0.25]))


# -- SoftAdapt ----------------------------------------------------------------------------------------


def softadapt_reference(history, c, beta, normalized):
    """float64 SoftAdapt by the formula, term by term in Python floats."""
    out = [list(c)]
    for prev, now in zip(history, history[1:]):
        s = [(n - p) / (p if normalized else 1.0) for p, n in zip(prev, now)]
        e = [ci * math.exp(beta * si) for ci, si in zip(c, s)]
        out.append([sum(c) * ei / sum(e) for ei in e])
    return out


@pytest.mark.parametrize("normalized", [True, False])
def test_softadapt_matches_the_formula(normalized):
    history = [[1.0, 400.0], [0.9, 150.0], [0.85, 20.0], [0.84, 21.0], [0.5, 21.0]]
    c, beta = [2.0, 0.5], 3.0
    balancer = make_balancer("softadapt", c, beta=beta, normalized=normalized)
    got = [balancer(torch.tensor(h, dtype=torch.float64)) for h in history]
    expected = torch.tensor(softadapt_reference(history, c, beta, normalized), dtype=torch.float32)
    torch.testing.assert_close(torch.stack(got), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("options", [{}, {"beta": 10.0}, {"normalized": False}])
def test_softadapt_on_the_toy_favours_the_slowest_term_and_keeps_the_sum(options):
    balancer = make_balancer("softadapt", [1.0, 1.0], **options)
    trace = Toy().run(balancer, 30)
    assert torch.equal(trace[0][2], torch.tensor([1.0, 1.0]))              # first step: configured weights
    normalized = options.get("normalized", True)
    for (previous, _, _), (losses, _, weights) in zip(trace, trace[1:]):
        assert (weights > 0).all()
        torch.testing.assert_close(weights.sum(), torch.tensor(2.0), rtol=1e-6, atol=0)
        change = (losses - previous) / (previous if normalized else 1.0)
        assert (weights[0] > weights[1]) == (change[0] > change[1])       # the slower term gets more
    if not options:       # L1 decreases by ~3.5 % a step, L2 by ~64 %: L1 always gets the larger weight
        assert all(w[0] > w[1] for _, _, w in trace[1:])
    scaled = Toy().run(make_balancer("softadapt", [3.0, 0.5], **options), 30)
    for _, _, weights in scaled:
        torch.testing.assert_close(weights.sum(), torch.tensor(3.5), rtol=1e-6, atol=0)


# -- ReLoBRaLo ----------------------------------------------------------------------------------------


def relobralo_reference(history, rhos, alpha, tau):
    """float64 ReLoBRaLo lambdas by the formula (lambda(0) = 1, L(0) the first losses)."""
    T = len(history[0])

    def bal(now, ref):
        e = [math.exp(n / (tau * r)) for n, r in zip(now, ref)]
        return [T * ei / sum(e) for ei in e]

    lam, out = [1.0] * T, []
    for t, now in enumerate(history):
        prev = history[t - 1] if t else now
        b0, b1 = bal(now, history[0]), bal(now, prev)
        lam = [alpha * (rhos[t] * l + (1 - rhos[t]) * a) + (1 - alpha) * b for l, a, b in zip(lam, b0, b1)]
        out.append(lam)
    return out


@pytest.mark.parametrize("expected_rho", [0.0, 1.0])
def test_relobralo_matches_the_formula(expected_rho):
    history = [[1.0, 400.0, 3.0], [0.9, 150.0, 2.0], [0.85, 20.0, 2.5], [0.84, 21.0, 1.0]]
    c = [1.0, 2.0, 0.5]
    balancer = make_balancer("relobralo", c, alpha=0.7, tau=0.5, expected_rho=expected_rho)
    got = torch.stack([balancer(torch.tensor(h, dtype=torch.float64)) for h in history])
    lam = relobralo_reference(history, [expected_rho] * len(history), 0.7, 0.5)
    expected = torch.tensor(lam, dtype=torch.float64) * torch.tensor(c, dtype=torch.float64)
    torch.testing.assert_close(got, expected.float(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha, tau", [(0.0, 0.1), (0.0, 1.0), (0.5, 0.1), (0.999, 0.1), (0.9, 2.0)])
def test_relobralo_weights_are_positive_and_sum_to_T(alpha, tau):
    balancer = make_balancer("relobralo", [1.0, 1.0], alpha=alpha, tau=tau, expected_rho=0.5)
    trace = Toy(lr=0.004).run(balancer, 40)
    for _, _, weights in trace:
        assert (weights > 0).all()
        assert abs(weights.double().sum().item() - 2.0) < 1e-5
    if alpha == 0.0:      # lambda = bal(t, t-1): the term with the larger L(t) / L(t-1) gets more
        for (previous, _, _), (losses, _, weights) in zip(trace, trace[1:]):
            ratio = losses / previous
            if (previous > 0).all():       # L2 reaches exactly 0 (y = -2 in float64) after ~30 steps
                assert (weights[0] > weights[1]) == (ratio[0] > ratio[1])


def test_relobralo_saudade_is_reproducible_with_the_seed():
    def weights(seed):
        balancer = make_balancer("relobralo", [1.0, 1.0], alpha=0.9, expected_rho=0.5, seed=seed)
        return torch.stack([w for _, _, w in Toy(lr=0.004).run(balancer, 25)])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


# -- gradient norms -----------------------------------------------------------------------------------


def test_gradient_norm_at_alpha_0_equalizes_weighted_gradient_norms():
    balancer = make_balancer("gradient_norm", [1.0, 1.0], alpha=0.0)
    assert balancer.needs_gradient_norms
    for _, norms, weights in Toy(lr=0.003).run(balancer, 30):
        products = weights.double() * norms
        torch.testing.assert_close(products[0], products[1], rtol=1e-6, atol=0)
        torch.testing.assert_close(products[0], norms.mean(), rtol=1e-6, atol=0)


def test_gradient_norm_follows_the_running_average():
    norms = [[2.0, 400.0], [1.0, 50.0], [0.5, 1.0], [3.0, 0.1]]
    balancer = make_balancer("gradient_norm", [1.0, 0.5], alpha=0.9)
    lam = None
    for g in norms:
        got = balancer(torch.zeros(2), torch.tensor(g, dtype=torch.float64))
        hat = [sum(g) / 2 / gi for gi in g]
        lam = hat if lam is None else [0.9 * l + 0.1 * h for l, h in zip(lam, hat)]
        torch.testing.assert_close(got, torch.tensor([lam[0], 0.5 * lam[1]]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_gradient_norm_converges_faster_on_the_badly_scaled_toy(alpha):
    # lr = 0.003: fixed weights need ~1150 steps to L1 + L2 < 1e-6 (x contracts by 1 - 2 lr a step);
    # the balanced run needs 28
    balanced = Toy(lr=0.003).steps_to(make_balancer("gradient_norm", [1.0, 1.0], alpha=alpha), 1e-6, 200)
    fixed = Toy(lr=0.003).steps_to(make_balancer("fixed", [1.0, 1.0]), 1e-6, 200)
    assert balanced <= 40 and fixed == 200


# -- resume, guards, errors ---------------------------------------------------------------------------


SCHEME_OPTIONS = [("fixed", {}), ("softadapt", {"beta": 5.0}), ("relobralo", {"alpha": 0.9, "expected_rho": 0.5}),
                  ("gradient_norm", {})]


@pytest.mark.parametrize("scheme, options", SCHEME_OPTIONS)
def test_state_dict_round_trip_resumes_exactly(scheme, options):
    seeded = {"seed": 7} if scheme == "relobralo" else {}
    toy, balancer = Toy(lr=0.004), make_balancer(scheme, [1.0, 2.0], **options, **seeded)
    toy.run(balancer, 10)
    saved = balancer.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in saved.values())
    params, optimizer = toy.params.detach().clone(), toy.optimizer.state_dict()
    uninterrupted = torch.stack([w for _, _, w in toy.run(balancer, 5)])

    restored = make_balancer(scheme, [1.0, 2.0], **options)       # a relobralo one with another seed
    restored.load_state_dict({k: v.clone() for k, v in saved.items()})
    resumed = Toy(lr=0.004)
    with torch.no_grad():
        resumed.params.copy_(params)
    resumed.optimizer.load_state_dict(optimizer)
    assert torch.equal(torch.stack([w for _, _, w in resumed.run(restored, 5)]), uninterrupted)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_zero_and_non_finite_values_never_give_nan_weights(scheme):
    balancer = make_balancer(scheme, [1.0, 0.0, 2.0])
    losses = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [math.nan, 1.0, math.inf], [0.0, math.inf, 1e-30],
              [1e30, 0.0, 2.0], [1.0, 2.0, 3.0]]
    norms = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [math.nan, 1.0, math.inf], [0.0, 5.0, 1e-30],
             [math.inf, math.inf, math.inf], [1.0, 2.0, 3.0]]
    for loss, norm in zip(losses, norms):
        weights = balancer(torch.tensor(loss), torch.tensor(norm))
        assert torch.isfinite(weights).all() and (weights >= 0).all(), (loss, weights)
        assert weights[1] == 0       # a zero configured weight stays zero
    assert EPS > 0


@pytest.mark.parametrize("call, match", [
    (lambda: make_balancer("gradnorm", [1.0]), "choose one of fixed, softadapt, relobralo, gradient_norm"),
    (lambda: make_balancer("softadapt", [1.0], gamma=1.0), "no option.* gamma.*beta, normalized"),
    (lambda: make_balancer("fixed", [1.0], beta=1.0), "options are: none"),
    (lambda: make_balancer("fixed", []), "at least one weight"),
    (lambda: make_balancer("fixed", [1.0, -0.5]), ">= 0"),
    (lambda: make_balancer("fixed", [0.0, 0.0]), "positive weight"),
    (lambda: make_balancer("fixed", [1.0, math.nan]), "finite"),
    (lambda: make_balancer("fixed", 1.0), "list of weights"),
    (lambda: make_balancer("gradient_norm", [1.0], alpha=1.0), r"alpha must be in \[0, 1\)"),
    (lambda: make_balancer("gradient_norm", [1.0], alpha=-0.1), r"alpha must be in \[0, 1\)"),
    (lambda: make_balancer("relobralo", [1.0], alpha=1.5), r"alpha must be in \[0, 1\]"),
    (lambda: make_balancer("relobralo", [1.0], tau=0.0), "tau > 0"),
    (lambda: make_balancer("relobralo", [1.0], expected_rho=2.0), "expected_rho"),
    (lambda: make_balancer("relobralo", [1.0], seed=1.5), "seed must be an integer"),
    (lambda: make_balancer("softadapt", [1.0], normalized="yes"), "true or false"),
    (lambda: make_balancer("softadapt", [1.0], beta=math.inf), "finite number"),
    (lambda: make_balancer("gradient_norm", [1.0, 1.0])(torch.ones(2)), "needs gradient_norms"),
    (lambda: make_balancer("softadapt", [1.0]).load_state_dict({"step": torch.tensor(0)}), "resume with"),
    (lambda: make_balancer("relobralo", [1.0, 1.0]).load_state_dict(
        make_balancer("relobralo", [1.0, 1.0, 1.0]).state_dict()), "same number of loss terms"),
])
def test_mistakes_are_one_line_config_errors(call, match):
    with pytest.raises(ConfigError, match=match) as error:
        call()
    assert "\n" not in str(error.value)


def test_wrong_shapes_are_one_line_shape_errors():
    balancer = make_balancer("gradient_norm", [1.0, 1.0])
    for losses, norms in [(torch.ones(3), torch.ones(2)), (torch.ones(2, 1), torch.ones(2)),
                          (torch.ones(2), torch.ones(3))]:
        with pytest.raises(ShapeError, match="one value per term") as error:
            balancer(losses, norms)
        assert "\n" not in str(error.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scheme, options", SCHEME_OPTIONS)
def test_weights_follow_the_losses_device(scheme, options):
    cpu, gpu = make_balancer(scheme, [1.0, 2.0], **options), make_balancer(scheme, [1.0, 2.0], **options)
    for losses, norms in [([1.0, 400.0], [2.0, 400.0]), ([0.9, 150.0], [1.9, 245.0]), ([0.8, 10.0], [1.8, 63.0])]:
        losses, norms = torch.tensor(losses, dtype=torch.float64), torch.tensor(norms, dtype=torch.float64)
        on_gpu = gpu(losses.cuda(), norms.cuda())
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
        torch.testing.assert_close(on_gpu.cpu(), cpu(losses, norms), rtol=1e-6, atol=0)
    restored = make_balancer(scheme, [1.0, 2.0], **options)
    restored.load_state_dict(gpu.state_dict())
    torch.testing.assert_close(restored(losses, norms), gpu(losses.cuda(), norms.cuda()).cpu(), rtol=1e-6, atol=0)
