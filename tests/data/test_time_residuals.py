"""PDE residuals of the periodic time-dependent PDEs (PeriodicEvolution.residual / initial_residual).

Trajectories come from each class's own solver with a fixed step that divides every snapshot interval, so
the snapshots at spacing 4 dt, 2 dt, dt are the same solve subsampled: the residual of the solver's data is
then the finite-difference error of the time derivative and must fall as dt^2.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from oplearn.data.batch import Batch
from oplearn.data.pdes import PDES, Advection, Burgers, Heat, NavierStokes, get_pde
from oplearn.errors import ConfigError, ShapeError

# name -> (class, solver settings, first time kept: Burgers and heat skip their stiff initial transient)
CASES = {
    "burgers": (Burgers, dict(solver_resolution=128, final_time=0.5, dt=1 / 1024), 0.25),
    "advection": (Advection, dict(solver_resolution=128, final_time=0.25, dt=1 / 1024, alpha=4.0), 0.0),
    "heat": (Heat, dict(solver_resolution=32, final_time=0.5, dt=1 / 1024), 0.25),
    "navier_stokes": (NavierStokes, dict(solver_resolution=32, final_time=1.0, dt=1 / 1024), 0.0),
}
# A wrong parameter for each PDE: the residual of its solution, taken with the right PDE, must be large.
WRONG = {"burgers": {"viscosity": 0.13}, "advection": {"velocity": 1.1}, "heat": {"diffusivity": 0.013},
         "navier_stokes": {"forcing_amplitude": 0.13}}
FINEST = 64  # snapshots after t = 0 of the finest solve


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the machine is shared, and small FFTs run faster that way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def trajectory(name: str, **changes) -> tuple[torch.Tensor, np.ndarray]:
    """Solver snapshots (2, T, *S) float64 of samples 0 and 1 at times >= the case's start, and those times."""
    cls, settings, start = CASES[name]
    pde = cls(n_times=FINEST, **{**settings, **changes})
    values = pde.solve(pde.initial_condition(0, [0, 1]), 1).to(torch.float64)
    keep = pde.times() >= start - 1e-12
    return values[:, torch.from_numpy(keep)], pde.times()[keep]


def make_pde(name: str, **changes):
    cls, settings, _ = CASES[name]
    return cls(n_times=FINEST, **{**settings, **changes})


def make_batch(pde, snapshots: torch.Tensor, times, k: int = 1, overlap: bool = False) -> Batch:
    """Inputs: the first k snapshots; outputs: the rest (from snapshot k - 1 when ``overlap``)."""
    times = [float(t) for t in times]
    first = k - 1 if overlap else k
    n = snapshots.shape[-1]
    return Batch(inputs=snapshots[:, :k], targets=snapshots[:, first:], kind="grid", spacing=(1 / n,) * pde.dim,
                 pde=pde.name, params={**pde.model_dump(mode="json"), "input_times": times[:k],
                                       "output_times": times[first:]})


def time_derivative_size(pde, batch: Batch, u: torch.Tensor) -> torch.Tensor:
    """||D_t u|| over the residual's sequence: the residual minus the spatial operator."""
    sequence = torch.cat([batch.inputs, u], dim=1)
    spatial = pde.spatial_operator(sequence.reshape(-1, *sequence.shape[2:])).reshape(sequence.shape)
    return (pde.residual(u, batch)[:, 0] - spatial).norm()


@pytest.mark.parametrize("name", list(CASES))
def test_solver_data_residual_is_small_and_second_order(name):
    pde = make_pde(name)
    snapshots, times = trajectory(name)
    sizes = []
    for step in (4, 2, 1):
        batch = make_batch(pde, snapshots[:, ::step], times[::step])
        # The loss term rebuilds the PDE from the batch.
        rebuilt = get_pde(batch.pde, **{key: batch.params[key] for key in PDES[batch.pde].model_fields})
        residual = rebuilt.residual(batch.targets, batch)
        assert residual.shape == (2, 1, len(times[::step]), *snapshots.shape[2:])
        sizes.append(float(residual.norm() / time_derivative_size(pde, batch, batch.targets)))
    ratios = [sizes[0] / sizes[1], sizes[1] / sizes[2]]
    # observed: relative 2.4e-4 (burgers), 2.5e-4 (advection), 1.6e-4 (heat), 5.7e-4 (NS); ratios 4.0-4.4
    assert sizes[-1] < 2e-3, sizes
    assert all(3.0 < ratio < 5.0 for ratio in ratios), (sizes, ratios)


@pytest.mark.parametrize("name", list(CASES))
def test_wrong_fields_have_large_residuals(name):
    pde = make_pde(name)
    snapshots, times = trajectory(name)
    batch = make_batch(pde, snapshots, times)
    right = float(pde.residual(batch.targets, batch).norm())
    scale = float(time_derivative_size(pde, batch, batch.targets))
    # the solution of a PDE with a wrong parameter
    wrong, _ = trajectory(name, **WRONG[name])
    wrong_parameter = float(pde.residual(wrong[:, 1:], make_batch(pde, wrong, times)).norm())
    # the right solution one snapshot late: the outputs start at times[2] but are labelled from times[1]
    late_batch = dataclasses.replace(batch, params={**batch.params, "output_times": [float(t) for t in times[1:-1]]})
    late = float(pde.residual(snapshots[:, 2:], late_batch).norm())
    assert right < 2e-3 * scale
    assert wrong_parameter > 100 * right, (right, wrong_parameter)
    assert late > 100 * right, (right, late)


@pytest.mark.parametrize("name", list(CASES))
def test_split_and_repeated_initial_time_give_the_same_residual(name):
    pde = make_pde(name)
    snapshots, times = trajectory(name)
    snapshots, times = snapshots[:, ::8], times[::8]
    one_input = make_batch(pde, snapshots, times)
    reference = pde.residual(one_input.targets, one_input)
    three_inputs = make_batch(pde, snapshots, times, k=3)
    torch.testing.assert_close(pde.residual(three_inputs.targets, three_inputs), reference, rtol=0, atol=0)
    overlap = make_batch(pde, snapshots, times, k=2, overlap=True)
    u = overlap.targets.clone().requires_grad_(True)
    torch.testing.assert_close(pde.residual(u, overlap), reference, rtol=0, atol=0)
    # the predicted initial snapshot takes part in the PDE residual and in the initial term
    pde.residual(u, overlap).square().mean().backward()
    assert float(u.grad[:, 0].abs().max()) > 0
    initial = pde.initial_residual(u, overlap)
    assert initial.shape == (2, 1, *snapshots.shape[2:]) and float(initial.detach().abs().max()) == 0.0
    shifted = overlap.targets + 0.5
    torch.testing.assert_close(pde.initial_residual(shifted, overlap), torch.full_like(initial, 0.5))


@pytest.mark.parametrize("name", list(CASES))
def test_float32_gradient_matches_float64(name):
    pde = make_pde(name)
    snapshots, times = trajectory(name)
    # Burgers' viscous symbol nu (2 pi k)^2 reaches 1.6e4 at N = 128: float32 FFT roundoff (~1e-7 per mode) times
    # that symbol, twice in the gradient, leaves a 2e-3 relative error in the gradient's (tiny) high modes. That is
    # the conditioning of the equation, not of the code; at N = 64 (symbol 4e3) the error is 16 times smaller.
    coarsen = 2 if name == "burgers" else 1
    snapshots, times = snapshots[:, ::8, ..., ::coarsen], times[::8]
    batch = make_batch(pde, snapshots, times)
    generator = torch.Generator().manual_seed(0)
    # a smooth perturbation, so the residual is O(1) and the gradient is not a float32 cancellation
    noise = torch.randn(batch.targets.shape, generator=generator, dtype=torch.float64)
    axes = tuple(range(2, noise.ndim))
    noise = torch.fft.irfftn(torch.fft.rfftn(noise, dim=axes) * _low_pass(noise.shape[2:]), s=noise.shape[2:],
                             dim=axes)
    perturbed = batch.targets + 0.1 * noise / noise.std()
    gradients = {}
    for dtype in (torch.float32, torch.float64):  # the same float32-rounded data in both
        u = perturbed.float().to(dtype).requires_grad_(True)
        typed = batch.with_inputs(batch.inputs.float().to(dtype))
        residual = pde.residual(u, typed)
        assert residual.dtype == dtype
        residual.square().mean().backward()
        gradients[dtype] = u.grad
    expected = gradients[torch.float64]
    torch.testing.assert_close(gradients[torch.float32].double(), expected, rtol=1e-3,
                               atol=1e-3 * float(expected.abs().max()))


def _low_pass(shape) -> torch.Tensor:
    """rfftn mask keeping |k| <= 4 on every axis."""
    axes = [torch.fft.fftfreq(n, d=1 / n).abs() for n in shape[:-1]] + [torch.fft.rfftfreq(shape[-1], d=1 / shape[-1])]
    grids = torch.meshgrid(*axes, indexing="ij")
    return functools.reduce(torch.logical_and, [g <= 4 for g in grids]).to(torch.float64)


@pytest.mark.parametrize("name,size", [("burgers", 16), ("advection", 16), ("heat", 8), ("navier_stokes", 8)])
def test_gradcheck(name, size):
    pde = make_pde(name)  # the residual works on the grid of u, whatever the solver's resolution
    generator = torch.Generator().manual_seed(1)
    shape = (1, 1, *(size,) * pde.dim)
    inputs = torch.randn(shape, generator=generator, dtype=torch.float64)
    u = torch.randn((1, 3, *(size,) * pde.dim), generator=generator, dtype=torch.float64, requires_grad=True)
    batch = Batch(inputs=inputs, targets=None, spacing=(1 / size,) * pde.dim, pde=name,
                  params={**pde.model_dump(mode="json"), "input_times": [0.0], "output_times": [0.1, 0.2, 0.3]})
    assert torch.autograd.gradcheck(lambda field: pde.residual(field, batch), (u,))
    overlap = Batch(inputs=inputs, targets=None, spacing=(1 / size,) * pde.dim, pde=name,
                    params={**pde.model_dump(mode="json"), "input_times": [0.0], "output_times": [0.0, 0.1, 0.2]})
    assert torch.autograd.gradcheck(lambda field: pde.residual(field, overlap).square().mean(), (u,))


def _tiny(input_times, output_times, outputs=None, spacing=(1 / 16,)):
    pde = Burgers()
    outputs = len(output_times) if outputs is None else outputs
    batch = Batch(inputs=torch.zeros(1, len(input_times), 16), targets=None, spacing=spacing, pde="burgers",
                  params={**pde.model_dump(mode="json"), "input_times": input_times, "output_times": output_times})
    return pde, torch.zeros(1, outputs, 16), batch


@pytest.mark.parametrize("input_times,output_times,message", [
    ([0.0], [0.1, 0.25], "times 1 and 2"),              # uneven spacing
    ([0.0, 0.1], [0.05, 0.15], "increasing"),           # not increasing
    ([0.0], [0.1], "at least 3"),                       # too few for a second-order derivative
    ([0.0], [0.0, 0.1], "at least 3"),                  # the repeated time counts once
    ([0.0], [0.1, float("nan")], "finite"),
])
def test_bad_times_raise_config_error(input_times, output_times, message):
    pde, u, batch = _tiny(input_times, output_times)
    with pytest.raises(ConfigError, match=message):
        pde.residual(u, batch)


def test_other_user_errors():
    pde, u, batch = _tiny([0.0], [0.1, 0.2])
    with pytest.raises(ConfigError, match="output_steps to include the last input step"):
        pde.initial_residual(u, batch)
    del batch.params["output_times"]
    with pytest.raises(ConfigError, match="output_times"):
        pde.residual(u, batch)
    pde, u, batch = _tiny([0.0], [0.1, 0.2], outputs=3)
    with pytest.raises(ShapeError, match="3 snapshots"):
        pde.residual(u, batch)
    pde, u, batch = _tiny([0.0], [0.1, 0.2], spacing=(1 / 8,))
    with pytest.raises(ConfigError, match="spacing 1/16"):
        pde.residual(u, batch)


def test_spacing_of_nodes_files_is_accepted():
    """The same points: 1/N (the solver's grid) or 1/(N - 1) (what a grid_location="nodes" file reports)."""
    u = torch.randn(1, 2, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    results = []
    for spacing in ((1 / 16,), (1 / 15,), None):
        pde, _, batch = _tiny([0.0], [0.1, 0.2], spacing=spacing)
        results.append(pde.residual(u, batch.with_inputs(torch.ones(1, 1, 16, dtype=torch.float64))))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[2], results[0], rtol=0, atol=0)


def test_low_precision_is_computed_in_float32():
    pde, u, batch = _tiny([0.0], [0.1, 0.2])
    x = torch.arange(16, dtype=torch.float64) / 16
    field = torch.stack([torch.sin(2 * torch.pi * x) * np.exp(-0.1 * t) for t in (0.1, 0.2)])[None]
    field = field.to(torch.bfloat16)
    batch = batch.with_inputs(torch.sin(2 * torch.pi * x)[None, None].to(torch.bfloat16))
    low = pde.residual(field, batch)
    assert low.dtype == torch.float32
    reference = pde.residual(field.double(), batch.with_inputs(batch.inputs.double()))  # same rounded data
    torch.testing.assert_close(low.double(), reference, rtol=0, atol=1e-5 * float(reference.abs().max()))
