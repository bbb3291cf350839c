"""Empirical NTK: the three methods agree in float64, K(x, x) is a PSD Gram matrix, tiling changes nothing."""

import pytest
import torch
from torch import nn

from oplearn.analysis import ntk as ntk_module
from oplearn.analysis.ntk import empirical_ntk
from oplearn.errors import ConfigError, ShapeError
from oplearn.layers.kan import KANLinear, PointwiseKAN
from oplearn.models import build

OUTPUTS = ("trace", "full", "diagonal")


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))


def cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 4, (3, 2), stride=2), nn.GELU(),
                         nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2 * 3 * 4, 3))


class Conv13(nn.Module):
    """A 1-D and a 3-D convolution, both k x k, with a 1-D sample reshaped to 3-D in between."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.c1, self.c3 = nn.Conv1d(2, 3, 3, padding=1), nn.Conv3d(3, 2, 2, bias=False)

    def forward(self, x):
        h = torch.tanh(self.c1(x))  # (n, 3, 8)
        return self.c3(h.reshape(-1, 3, 2, 2, 2))


def fno(dim):
    torch.manual_seed(3)
    return build("fno", in_channels=1, out_channels=2, modes=(3,) * dim, width=4, n_layers=2,
                 projection_channels=6)


def kan_net(basis="chebyshev"):
    # torch.func cannot yet run the B-spline basis (its autograd.Function has no setup_context), so the
    # three-way comparison uses pure-torch bases; test_bspline_kan_structured covers B-splines.
    torch.manual_seed(4)
    return nn.Sequential(KANLinear(3, 5, basis=basis), KANLinear(5, 2, basis="rbf", bias=False))


def kan_fno():
    torch.manual_seed(5)
    return nn.Sequential(PointwiseKAN(1, 3, basis="rbf", grid_size=3), nn.Conv1d(3, 2, 1))


CASES = {
    "mlp": (mlp, (5,)),
    "cnn_kxk": (cnn, (2, 8, 9)),
    "conv1d_conv3d": (Conv13, (2, 8)),
    "fno1d": (lambda: fno(1), (1, 8)),
    "fno2d": (lambda: fno(2), (1, 6, 8)),
    "kan": (kan_net, (3,)),
    "pointwise_kan": (kan_fno, (1, 5)),
}


def inputs(shape, n, seed):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def no_fallback(monkeypatch):
    """Make the generic methods unusable so that `structured` is tested on its layer rules alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("structured fell back to a generic method")

    monkeypatch.setattr(ntk_module, "jacobian_block", refuse)
    monkeypatch.setattr(ntk_module, "vjp_block", refuse)


@pytest.mark.parametrize("case", CASES)
def test_methods_agree_in_float64(case, monkeypatch):
    build_model, shape = CASES[case]
    model = build_model()
    x1, x2 = inputs(shape, 3, 10), inputs(shape, 2, 11)
    for outputs in OUTPUTS:
        reference = empirical_ntk(model, x1, x2, method="jacobian", outputs=outputs, dtype=torch.float64)
        by_vjp = empirical_ntk(model, x1, x2, method="vjp", outputs=outputs, dtype=torch.float64)
        with monkeypatch.context() as patch:
            patch.setattr(ntk_module, "jacobian_block", _refuse)
            patch.setattr(ntk_module, "vjp_block", _refuse)
            structured = empirical_ntk(model, x1, x2, method="structured", outputs=outputs, dtype=torch.float64)
        scale = reference.abs().max()
        assert scale > 1e-3 and reference.dtype == torch.float64
        assert torch.allclose(by_vjp, reference, rtol=0, atol=1e-6 * scale), (case, outputs)
        assert torch.allclose(structured, reference, rtol=0, atol=1e-6 * scale), (case, outputs)


def _refuse(*args, **kwargs):
    raise AssertionError("structured fell back to a generic method")


def loop_ntk(model, x1, x2):
    """Reference full kernel from one autograd.grad call per (sample, output): J1 J2^T."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x):
        out = model(x).reshape(len(x), -1)
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[n, j], params, retain_graph=True)])
                for n in range(out.shape[0]) for j in range(out.shape[1])]
        return torch.stack(rows)

    return jacobian(x1) @ jacobian(x2).T


def test_bspline_kan_structured(no_fallback):
    model = kan_net("bspline").double()
    x1, x2 = inputs((3,), 3, 13).double(), inputs((3,), 2, 14).double()
    reference = loop_ntk(model, x1, x2)
    structured = empirical_ntk(model, x1, x2, method="structured", outputs="full")
    assert torch.allclose(structured, reference, rtol=0, atol=1e-10 * reference.abs().max())


def test_output_modes_are_views_of_the_full_kernel():
    model, x1, x2 = mlp(), inputs((5,), 3, 1), inputs((5,), 4, 2)
    full = empirical_ntk(model, x1, x2, outputs="full", dtype=torch.float64).reshape(3, 3, 4, 3)
    diagonal = empirical_ntk(model, x1, x2, outputs="diagonal", dtype=torch.float64)
    trace = empirical_ntk(model, x1, x2, outputs="trace", dtype=torch.float64)
    assert torch.allclose(diagonal, full.diagonal(dim1=1, dim2=3), atol=1e-12)
    assert torch.allclose(trace, diagonal.sum(-1), atol=1e-12)


def test_fallback_parameters_are_included():
    """LayerNorm and a frozen weight: the rules cover part, the generic method the rest, nothing twice."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2))
    model[0].weight.requires_grad_(False)
    x1, x2 = inputs((4,), 3, 3), inputs((4,), 2, 4)
    for outputs in OUTPUTS:
        reference = empirical_ntk(model, x1, x2, method="jacobian", outputs=outputs, dtype=torch.float64)
        structured = empirical_ntk(model, x1, x2, method="structured", outputs=outputs, dtype=torch.float64)
        assert torch.allclose(structured, reference, atol=1e-10)


def test_tied_weights_are_not_split():
    """One weight used by two layers: its gradient is the sum over both uses, cross terms included."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    model[2].weight = model[0].weight
    x1, x2 = inputs((4,), 3, 5), inputs((4,), 2, 6)
    reference = loop_ntk(model.double(), x1.double(), x2.double())
    structured = empirical_ntk(model, x1, x2, method="structured", outputs="full")
    assert torch.allclose(structured, reference, atol=1e-10 * reference.abs().max())


@pytest.mark.parametrize("case", ["mlp", "fno2d"])
def test_kernel_on_itself_is_symmetric_psd(case, no_fallback):
    build_model, shape = CASES[case]
    x = inputs(shape, 5, 7)
    for outputs in ("trace", "full"):
        k = empirical_ntk(build_model(), x, method="structured", outputs=outputs, dtype=torch.float64)
        assert torch.allclose(k, k.T, atol=1e-12 * k.abs().max())
        eigenvalues = torch.linalg.eigvalsh(k)
        assert eigenvalues.min() > -1e-10 * eigenvalues.max()
    diagonal = empirical_ntk(build_model(), x, method="structured", outputs="diagonal", dtype=torch.float64)
    for j in range(diagonal.shape[-1]):
        assert torch.linalg.eigvalsh(diagonal[..., j]).min() > -1e-10 * diagonal.abs().max()


@pytest.mark.parametrize("method", ["jacobian", "vjp", "structured", "structured-one-direction"])
def test_tiling_gives_the_same_kernel(method, monkeypatch):
    if method == "structured-one-direction":  # cotangents one direction at a time from a retained graph
        monkeypatch.setattr("oplearn.analysis.ntk_structured.WORK_BYTES", 1)
        method = "structured"
    model, x1, x2 = fno(1), inputs((1, 8), 5, 8), inputs((1, 8), 3, 9)
    for outputs in OUTPUTS:
        whole = empirical_ntk(model, x1, x2, method=method, outputs=outputs, dtype=torch.float64)
        tiled = empirical_ntk(model, x1, x2, method=method, outputs=outputs, chunk=2, dtype=torch.float64)
        assert torch.allclose(tiled, whole, atol=1e-12 * whole.abs().max())
        self_whole = empirical_ntk(model, x1, method=method, outputs=outputs, dtype=torch.float64)
        self_tiled = empirical_ntk(model, x1, method=method, outputs=outputs, chunk=2, dtype=torch.float64)
        assert torch.allclose(self_tiled, self_whole, atol=1e-12 * self_whole.abs().max())


def test_auto_and_float32_default():
    model, x = fno(2), inputs((1, 6, 8), 3, 12)
    k = empirical_ntk(model, x)
    assert k.shape == (3, 3) and k.dtype == torch.float32
    reference = empirical_ntk(model, x, method="jacobian", dtype=torch.float64)
    assert torch.allclose(k.double(), reference, rtol=1e-4, atol=1e-4 * reference.abs().max())
    assert next(model.parameters()).dtype == torch.float32  # the model itself was not cast


def test_bad_input_raises_one_line_errors(monkeypatch):
    model = mlp()
    with pytest.raises(ShapeError, match="same sample shape"):
        empirical_ntk(model, torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ConfigError, match="unknown NTK method"):
        empirical_ntk(model, torch.randn(2, 5), method="magic")
    with pytest.raises(ConfigError, match="unknown NTK outputs"):
        empirical_ntk(model, torch.randn(2, 5), outputs="all")
    with pytest.raises(ConfigError, match="chunk"):
        empirical_ntk(model, torch.randn(2, 5), chunk=0)
    monkeypatch.setattr(ntk_module, "MEMORY_BUDGET", 5000)
    with pytest.raises(ConfigError, match=r"needs .* GiB .*structured.*chunk") as info:
        empirical_ntk(model, torch.randn(8, 5), method="jacobian")
    assert "\n" not in str(info.value)
    assert empirical_ntk(model, torch.randn(8, 5), method="jacobian", chunk=1).shape == (8, 8)


def test_parameters_on_several_devices_are_refused():
    model = mlp()
    model[0].weight = nn.Parameter(model[0].weight.detach().to("meta"))
    with pytest.raises(ConfigError, match="several devices"):
        empirical_ntk(model, torch.randn(2, 5))


@pytest.mark.parametrize("outputs", ["full", "trace", "diagonal"])
def test_bspline_kan_kernels_agree_across_all_methods(outputs):
    """B-spline layers fall back to the plain Cox-de Boor recursion under torch.func, so every method runs."""
    from oplearn.layers import KANLinear

    torch.manual_seed(0)
    net = torch.nn.Sequential(KANLinear(3, 5), KANLinear(5, 2)).double()
    x1 = torch.rand(4, 3, dtype=torch.float64) * 1.6 - 0.8
    x2 = torch.rand(3, 3, dtype=torch.float64) * 1.6 - 0.8
    kernels = {m: empirical_ntk(net, x1, x2, method=m, outputs=outputs) for m in ("jacobian", "vjp", "structured")}
    scale = kernels["structured"].abs().max()
    for method in ("jacobian", "vjp"):
        assert (kernels[method] - kernels["structured"]).abs().max() <= 1e-6 * scale, method
