import math
import warnings

import matplotlib.image
import pytest
import torch
from torch.func import functional_call

from oplearn.errors import ConfigError, ShapeError
from oplearn.layers import KANLinear
from oplearn.layers import kan as kan_module
from oplearn.layers.kan import edge_entropy, prune, record_edge_scales, regularization
from oplearn.layers.kan_bases import extend_knots
from oplearn.layers.kan_bspline import BSplineExpansion, UniformBSplineExpansion, cox_de_boor
from oplearn.plot import plot_activations

# ---- slow, obvious float64 references: one point, one input, plain Python ----


def bspline_ref(x, knots, i, k):
    """Cox-de Boor written recursively for one point."""
    if k == 0:
        return 1.0 if knots[i] <= x < knots[i + 1] else 0.0
    rising = (x - knots[i]) / (knots[i + k] - knots[i]) * bspline_ref(x, knots, i, k - 1)
    falling = (knots[i + k + 1] - x) / (knots[i + k + 1] - knots[i + 1]) * bspline_ref(x, knots, i + 1, k - 1)
    return rising + falling


def uniform_knots(a, b, size, extra):
    h = (b - a) / size
    return [a + (j - extra) * h for j in range(size + 2 * extra + 1)]


def reference_functions(name, x, G=4, k=2, a=-1.0, b=1.0):
    """The basis functions of input value ``x`` as a list, from their textbook formulas."""
    h = (b - a) / G
    if name == "bspline":
        knots = uniform_knots(a, b, G, k)
        return [bspline_ref(x, knots, i, k) for i in range(G + k)]
    if name == "chebyshev":
        return [math.cos(n * math.acos(math.tanh(x))) for n in range(k + 1)]
    if name == "fourier":
        s = (x - a) / (b - a)
        return [math.cos(2 * math.pi * n * s) for n in range(1, G + 1)] + \
               [math.sin(2 * math.pi * n * s) for n in range(1, G + 1)]
    if name == "rbf":
        return [math.exp(-(((x - (a + j * h)) / h) ** 2)) for j in range(G + 1)]
    if name == "relu_power":
        out = []
        for i in range(G + k):
            s, e = a + (i - k) * h, a + (i + 1) * h
            out.append((max(0.0, x - s) * max(0.0, e - x)) ** 2 * 16 / (e - s) ** 4)
        return out
    if name == "truncated_power":
        u = (2 * x - a - b) / (b - a)
        return [u**p for p in range(k + 1)] + [max(0.0, u - (-1 + 2 * j / G)) ** k for j in range(1, G)]
    raise KeyError(name)


def rational_ref(x, numerator, denominator):
    p = sum(c * x**j for j, c in enumerate(numerator))
    q = sum(c * x ** (j + 1) for j, c in enumerate(denominator))
    return p / (1 + abs(q))


def edge_sum_reference(layer, x, name):
    """``y_j = b_j + sum_i [w_ji silu(x_i) + sum_b c_jib B_b(x_i)]`` with loops over edges."""
    c, w = layer.coefficients.tolist(), layer.base_weight
    y = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    for n in range(x.shape[0]):
        for i in range(layer.in_features):
            xi = float(x[n, i])
            if name == "rational":
                basis = layer.basis
                g = i // (layer.in_features // basis.groups)
                functions = [rational_ref(xi, basis.numerator[g].tolist(), basis.denominator[g].tolist())]
            else:
                functions = reference_functions(name, xi)
            for j in range(layer.out_features):
                y[n, j] += sum(cb * fb for cb, fb in zip(c[j][i], functions))
                if w is not None:
                    y[n, j] += float(w[j, i].detach()) * xi / (1 + math.exp(-xi))
    return y + layer.bias.detach()


BASIS_OPTIONS = {
    "bspline": dict(grid_size=4, order=2),
    "chebyshev": dict(order=2),
    "fourier": dict(grid_size=4),
    "rbf": dict(grid_size=4),
    "relu_power": dict(grid_size=4, order=2),
    "truncated_power": dict(grid_size=4, order=2),
    "rational": dict(order=3, groups=2),
}


def make_layer(name, in_features=4, out_features=3, seed=0):
    torch.manual_seed(seed)
    layer = KANLinear(in_features, out_features, basis=name, **BASIS_OPTIONS[name]).double()
    if name == "rational":  # coefficients with sign changes of Q, not the smooth SiLU start
        with torch.no_grad():
            layer.basis.numerator.normal_()
            layer.basis.denominator.normal_()
    return layer


@pytest.mark.parametrize("name", list(BASIS_OPTIONS))
def test_each_basis_equals_its_formula_summed_over_edges(name):
    layer = make_layer(name)
    x = torch.rand(6, 4, dtype=torch.float64) * 2.8 - 1.4  # also beyond the grid range
    torch.testing.assert_close(layer(x), edge_sum_reference(layer, x, name), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", list(BASIS_OPTIONS))
def test_gradients_match_finite_differences(name):
    layer = make_layer(name, in_features=2, out_features=2)
    names, values = zip(*layer.named_parameters())
    x = (torch.rand(3, 2, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()

    def call(x, *parameters):
        return functional_call(layer, dict(zip(names, parameters)), (x,))

    assert torch.autograd.gradcheck(call, (x, *values))


@pytest.mark.filterwarnings("ignore:KANLinear")
def test_bspline_on_an_uneven_grid_and_its_second_derivative():
    torch.manual_seed(1)
    layer = KANLinear(2, 2, grid_size=5, order=3).double()
    interior = torch.sort(torch.rand(2, 6, dtype=torch.float64) * 2 - 1, dim=1).values
    layer.basis = layer.basis.with_interior(interior).double()
    x = torch.rand(40, 2, dtype=torch.float64) * 3 - 1.5
    knots = layer.basis.knots.tolist()
    expected = torch.tensor([[[bspline_ref(float(x[n, i]), knots[i], b, 3) for b in range(8)] for i in range(2)]
                             for n in range(40)], dtype=torch.float64)
    torch.testing.assert_close(layer.basis(x), expected, atol=1e-12, rtol=0)
    x = x[:4].requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("where", ["everywhere", "inside"])
def test_uniform_closed_form_equals_cox_de_boor(order, where):
    """Values, gradients and second derivatives: on the grid range only (no index falls off the basis),
    and everywhere (also at the knots, in the extension cells and beyond the extended grid)."""
    torch.manual_seed(7)
    knots = extend_knots(torch.linspace(-1.3, 0.7, 6, dtype=torch.float64).expand(3, -1), order)
    if where == "inside":
        x = (torch.rand(80, 3, dtype=torch.float64) * 1.999 - 1.3).requires_grad_()
    else:
        x = torch.cat([torch.rand(80, 3, dtype=torch.float64) * 8 - 4, knots.T + 1e-9]).requires_grad_()
    fast = UniformBSplineExpansion.apply(x, knots, order)
    slow = BSplineExpansion.apply(x, knots, order)
    torch.testing.assert_close(fast, cox_de_boor(x.detach(), knots, order)[0], atol=1e-12, rtol=0)
    assert fast.shape == (x.shape[0], 3, 5 + order)
    if where == "inside":  # a partition of unity on the grid range
        torch.testing.assert_close(fast.sum(-1), torch.ones_like(x), atol=1e-12, rtol=0)
    if order == 0:
        return
    weights = torch.randn_like(fast)
    gradients = [torch.autograd.grad((values * weights).sum(), x, create_graph=True)[0] for values in (fast, slow)]
    torch.testing.assert_close(gradients[0], gradients[1], atol=1e-12, rtol=0)
    if order == 1:  # piecewise constant slope: no second derivative to compare
        return
    curvatures = [torch.autograd.grad(gradient.sum(), x)[0] for gradient in gradients]
    torch.testing.assert_close(curvatures[0], curvatures[1], atol=1e-11, rtol=0)
    points = x.detach()[:6].requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: UniformBSplineExpansion.apply(x, knots, order), (points,))


def test_bspline_takes_the_closed_form_while_the_grid_is_uniform():
    torch.manual_seed(8)
    data = torch.rand(200, 3) ** 2 * 1.6 - 0.7
    path = lambda layer: type(layer.basis(data.to(layer.basis.knots).requires_grad_()).grad_fn).__name__  # noqa: E731
    layer = KANLinear(3, 2)
    assert path(layer) == "UniformBSplineExpansionBackward" and path(layer.double()) == path(layer)
    layer.extend_grid(10)  # stays uniform
    assert layer.basis.is_uniform()
    fitted = KANLinear(3, 2)
    fitted.update_grid(data)  # nearly the quantiles: uneven
    assert path(fitted) == "BSplineExpansionBackward"
    layer = KANLinear(3, 2)
    layer.load_state_dict(fitted.state_dict())  # knots changed in place: the check is redone
    assert not layer.basis.is_uniform()


def fit_cubic_edges(layer):
    """Coefficients such that every edge is a cubic polynomial (exactly representable on any grid)."""
    torch.manual_seed(3)
    points = torch.linspace(-1, 1, 200, dtype=torch.float64)[:, None].expand(-1, layer.in_features)
    powers = torch.stack([points**p for p in range(4)], dim=-1)  # (P, in, 4)
    target = torch.einsum("pid,oid->pio", powers, torch.randn(layer.out_features, layer.in_features, 4,
                                                              dtype=torch.float64) / 2)
    design = layer.basis(points).transpose(0, 1)  # (in, P, n)
    solution = torch.linalg.lstsq(design, target.transpose(0, 1)).solution  # (in, n, out)
    with torch.no_grad():
        layer.coefficients.copy_(solution.permute(2, 0, 1))


def test_update_grid_moves_the_grid_to_the_data_and_keeps_the_function():
    torch.manual_seed(2)
    layer = KANLinear(3, 2, grid_size=5, order=3).double()
    fit_cubic_edges(layer)
    data = -0.6 + 1.5 * torch.rand(500, 3, dtype=torch.float64) ** 2  # skewed, inside [-0.6, 0.9]
    before = layer(data)
    layer.update_grid(data)  # the defaults: nearly the quantiles, no margin
    low, high = data.min(0).values, data.max(0).values
    torch.testing.assert_close(layer.basis.grid_range(), (low, high))
    layer.update_grid(data, grid_eps=1.0, margin=0.01)  # uniform, 1% of the range past each end
    torch.testing.assert_close(layer.basis.grid_range(), (low - 0.01 * (high - low), high + 0.01 * (high - low)))
    assert layer.basis.is_uniform()  # stays on the closed-form path
    assert (layer(data) - before).abs().max() < 1e-4
    layer.update_grid(data)
    spacing = layer.basis.interior.diff(dim=1)
    assert spacing.min() > 0 and spacing.max() / spacing.min() > 2  # quantile grid: finer where data is dense
    assert (layer(data) - before).abs().max() < 1e-4
    # A random spline is not in the new spline space: its refit is the least-squares one.
    torch.manual_seed(4)
    layer = KANLinear(3, 2, grid_size=5, order=3).double()
    with torch.no_grad():
        old_edges = layer.edge_values(data) - layer.base_weight * torch.nn.functional.silu(data)[:, None, :]
    layer.update_grid(data)
    design = layer.basis(data).transpose(0, 1)  # (in, N, n)
    best = torch.linalg.lstsq(design, old_edges.permute(2, 0, 1)).solution  # (in, n, out)
    fitted = torch.einsum("inb,oib->noi", design, layer.coefficients.detach())
    torch.testing.assert_close(fitted, torch.einsum("inb,ibo->noi", design, best), atol=1e-10, rtol=0)


def test_extend_grid_keeps_the_function_on_the_grid_range():
    torch.manual_seed(5)
    layer = KANLinear(3, 2, grid_size=5, order=3)
    layer.update_grid(torch.rand(300, 3) * 1.6 - 0.7)  # an uneven grid on about [-0.7, 0.9]
    low, high = layer.basis.grid_range()
    x = low + (high - low) * torch.linspace(0, 1, 400)[:, None]
    before = layer(x)
    for size in (10, 20):
        layer.extend_grid(size)
        assert layer.basis.grid_size == size and layer.coefficients.shape == (2, 3, size + 3)
        assert layer.coefficients.is_contiguous()  # optimizers such as LBFGS view gradients flat
        assert (layer(x) - before).abs().max() < 1e-4
    layer.extend_grid(27)  # grids not nested: least squares
    assert (layer(x) - before).abs().max() < 1e-3 * before.abs().max()


def test_far_out_of_range_inputs_warn_once_with_the_fraction():
    torch.manual_seed(6)
    layer = KANLinear(2, 3)
    x = torch.randn(400, 2) * 3
    fraction = (x.abs() > 2).float().mean().item()
    with pytest.warns(UserWarning, match=rf"{fraction:.2%} of inputs lie far outside the grid range; call update_grid"):
        layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # warned once already
        layer.update_grid(x)
        layer(x)  # the grid now covers the data
        KANLinear(2, 3, basis="chebyshev")(x)  # tanh first: no grid range


def test_bad_configurations_are_one_line_errors():
    cases = [
        (dict(basis="spline"), "unknown KAN basis 'spline'; choose one of: bspline, chebyshev"),
        (dict(grid_size=0), "grid_size must be a positive integer, got 0"),
        (dict(order=-1), "order must be an integer >= 0 for KAN basis 'bspline', got -1"),
        (dict(basis="truncated_power", order=0), "order must be an integer >= 1"),
        (dict(basis="chebyshev", grid_size=5), "KAN basis 'chebyshev' does not take grid_size; it takes: order"),
        (dict(basis="rational", groups=3), "groups=3 must be a positive divisor of in_features=4"),
        (dict(grid_range=(1, -1)), "grid_range must be two finite numbers low < high"),
        (dict(spline_init_scale=0), "spline_init_scale must be > 0, got 0"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message):
            KANLinear(4, 2, **options)
    with pytest.raises(ShapeError, match=r"expects \(\.\.\., 4\) inputs"):
        KANLinear(4, 2)(torch.randn(3, 5))
    with pytest.raises(ConfigError, match="extend_grid needs a grid basis .*basis 'chebyshev' has no grid"):
        KANLinear(4, 2, basis="chebyshev").extend_grid(10)
    with pytest.raises(ConfigError, match="new_grid_size must be a positive integer"):
        KANLinear(4, 2).extend_grid(0)
    with pytest.raises(ConfigError, match=r"margin must lie in \[0, 1\) \(a fraction of the sample range\), got -0.1"):
        KANLinear(4, 2).update_grid(torch.randn(10, 4), margin=-0.1)


def test_recorded_edge_scales_and_regularizers_match_the_explicit_edges(monkeypatch):
    monkeypatch.setattr(kan_module, "EDGE_BLOCK_ELEMENTS", 3 * 4 * 3)  # blocks of 3 rows
    layer = make_layer("bspline", in_features=3, out_features=4)
    x = (torch.rand(10, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    with record_edge_scales(layer):
        y = layer(x)
    phi = layer.edge_values(x)  # (10, out, in)
    torch.testing.assert_close(phi.sum(-1) + layer.bias, y)
    explicit = phi.abs().mean(0)
    torch.testing.assert_close(layer.edge_scale, explicit)
    recorded = torch.autograd.grad(regularization(layer, l1=1.0, entropy=2.0), [x, layer.coefficients])
    wanted = torch.autograd.grad(explicit.sum() + 2 * edge_entropy(explicit), [x, layer.coefficients])
    for got, expected in zip(recorded, wanted):
        torch.testing.assert_close(got, expected)
    weights = layer.coefficients.abs().mean(-1) + layer.base_weight.abs()
    torch.testing.assert_close(regularization(layer, l1=0.5, entropy=0, source="coefficients"), 0.5 * weights.sum())
    assert edge_entropy(torch.ones(3, 4)).item() == pytest.approx(math.log(12))
    assert edge_entropy(torch.tensor([0.0, 2.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="record_edge_scales"):
        regularization(KANLinear(2, 2))


def test_prune_masks_small_edges_and_reports_dead_nodes():
    layer = make_layer("bspline", in_features=4, out_features=3)
    with torch.no_grad():  # input 1 has no effect; the edge 2 -> 0 is tiny
        layer.coefficients[:, 1] = 0
        layer.base_weight[:, 1] = 0
        layer.coefficients[0, 2] *= 1e-6
        layer.base_weight[0, 2] *= 1e-6
    x = torch.rand(50, 4, dtype=torch.float64) * 2 - 1
    with record_edge_scales(layer):
        before = layer(x)
    report = prune(layer, threshold=1e-4)
    assert report == {"edges_kept": 8, "edges_pruned": 4, "dead_inputs": [1], "dead_outputs": []}
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=0)
    report = prune(layer, threshold=float("inf"))
    assert report["dead_outputs"] == [0, 1, 2]
    torch.testing.assert_close(layer(x), layer.bias.expand(50, 3))
    # The mask travels with the weights.
    fresh = make_layer("bspline", in_features=4, out_features=3, seed=9)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), layer(x))


def test_plot_activations_draws_one_panel_per_edge(tmp_path):
    layer = make_layer("bspline", in_features=3, out_features=2)
    prune(layer, threshold=0.0)
    layer.edge_mask[1, 2] = False
    figure = plot_activations(layer, tmp_path / "edges" / "layer.png")
    path = tmp_path / "edges" / "layer.png"
    assert path.stat().st_size > 5000
    assert len(figure.axes) == 6
    assert len([line for axis in figure.axes for line in axis.lines if line.get_linestyle() == "--"]) == 1
    image = matplotlib.image.imread(path)[..., :3]
    assert image.shape[1] > image.shape[0]  # 3 columns of inputs, 2 rows of outputs
    assert (image.mean(-1) < 0.9).mean() > 0.02  # curves and labels, not a blank page
    big = plot_activations(KANLinear(10, 12, basis="chebyshev"), tmp_path / "big.png", max_side=4)
    assert len(big.axes) == 16


def test_spline_init_scale_sets_the_initial_coefficient_range():
    """Coefficients start uniform in +-scale/sqrt(in * n_basis); the base path and bias keep +-1/sqrt(in)."""
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        layer = KANLinear(16, 32, spline_init_scale=scale)  # 16 * 32 * 8 draws: the extremes come near the bound
        bound = scale / (16 * layer.basis.n_basis) ** 0.5
        assert bound * 0.98 < layer.coefficients.abs().max() <= bound
        assert 0.98 / 4 < layer.base_weight.abs().max() <= 1 / 4
