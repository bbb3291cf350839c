"""Tests shared by the periodic time-dependent PDEs (PeriodicEvolution subclasses)."""

import numpy as np
import pytest
import torch

from oplearn.data.pdes import get_pde

SMALL = {
    "burgers": ({"solver_resolution": 256, "final_time": 0.1, "n_times": 2}, 64),
    "advection": ({"solver_resolution": 64, "final_time": 0.5, "n_times": 4}, 32),
    "heat": ({"solver_resolution": 32, "final_time": 0.2, "n_times": 2}, 16),
    "navier_stokes": ({"solver_resolution": 32, "final_time": 0.2, "n_times": 2, "dt": 0.01}, 16),
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(SMALL))
def test_cuda_matches_cpu(name):
    params, resolution = SMALL[name]
    problem = get_pde(name, **params)
    cpu = problem.solve_batch(0, range(4), resolution, device="cpu")["trajectories"]
    cuda = problem.solve_batch(0, range(4), resolution, device="cuda")["trajectories"]
    np.testing.assert_allclose(cuda, cpu, rtol=0, atol=1e-6 * np.abs(cpu).max())
