"""Dataset generation: determinism across processes and exact resume after kill -9."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from oplearn.data import generate
from oplearn.data.store import partial_path, read_dataset
from oplearn.errors import ConfigError


def kill_minus_9_halfway(command: list[str], out, total: int) -> None:
    """Start ``command`` and SIGKILL it once its partial file holds some but not all ``total`` samples."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, done = time.monotonic() + 120, 0
    while time.monotonic() < deadline and done < 64:
        time.sleep(0.1)
        try:
            with h5py.File(partial_path(out), "r", locking=False) as handle:
                done = int(handle.attrs["n_done"])
        except (OSError, KeyError):
            continue
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < done < total, "the run was not caught halfway"


def test_same_seed_same_data_whatever_the_number_of_workers(tmp_path):
    serial = generate("darcy", 6, 16, seed=4, workers=1, progress=False)
    parallel = generate("darcy", 6, 16, seed=4, workers=2, batch=2, progress=False)
    other_seed = generate("darcy", 6, 16, seed=5, workers=1, progress=False)
    for name in ("inputs", "outputs"):
        np.testing.assert_array_equal(serial[name], parallel[name])
    assert not np.array_equal(serial["inputs"], other_seed["inputs"])
    written = read_dataset(generate("darcy", 6, 16, seed=4, out=tmp_path / "d.h5", workers=1, progress=False))
    np.testing.assert_array_equal(written["arrays"]["outputs"], serial["outputs"])
    assert written["attrs"]["pde"] == "darcy" and written["attrs"]["params"]["tau"] == 3.0


def test_kill_minus_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "oplearn.cli", "generate", "darcy", "--n", "400", "--resolution", "24",
               "--seed", "7", "--workers", "1", "--out", str(out)]
    kill_minus_9_halfway(command, out, total=400)
    assert not out.exists() and partial_path(out).exists()

    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    reference = generate("darcy", 400, 24, seed=7, out=tmp_path / "straight.h5", workers=2, progress=False)
    resumed, straight = read_dataset(out), read_dataset(reference)
    for name in ("inputs", "outputs"):
        np.testing.assert_array_equal(resumed["arrays"][name], straight["arrays"][name])
    assert resumed["attrs"]["complete"] and not partial_path(out).exists()


def test_bad_requests_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown PDE"):
        generate("heat9", 2, 16, out=tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="resolution"):
        generate("darcy", 2, 4, out=tmp_path / "x.h5")
    assert not list(tmp_path.iterdir())


SMALL = {  # tiny but real settings of every time-dependent PDE
    "burgers": {"solver_resolution": 64, "final_time": 0.1, "n_times": 2},
    "advection": {"solver_resolution": 64, "final_time": 0.1, "n_times": 2},
    "heat": {"solver_resolution": 32, "final_time": 0.1, "n_times": 2, "dt": 1e-3},
    "navier_stokes": {"solver_resolution": 32, "final_time": 0.2, "n_times": 2},
}


@pytest.mark.parametrize("pde", sorted(SMALL))
def test_time_dependent_pdes_generate_trajectories_deterministically(pde, tmp_path):
    resolution = 16
    serial = generate(pde, 4, resolution, seed=3, params=SMALL[pde], batch=2, workers=1, progress=False)
    parallel = generate(pde, 4, resolution, seed=3, params=SMALL[pde], batch=2, workers=2, progress=False)
    dim = 1 if pde in ("burgers", "advection") else 2
    assert serial["trajectories"].shape == (4, 3, 1, *[resolution] * dim)
    np.testing.assert_allclose(serial["times"], [0.0, SMALL[pde]["final_time"] / 2, SMALL[pde]["final_time"]])
    np.testing.assert_array_equal(serial["trajectories"], parallel["trajectories"])
    assert np.isfinite(serial["trajectories"]).all()
    assert not np.array_equal(serial["trajectories"][0], serial["trajectories"][1])
    path = generate(pde, 4, resolution, seed=3, params=SMALL[pde], batch=2, out=tmp_path / "d.h5", progress=False)
    written = read_dataset(path)
    np.testing.assert_array_equal(written["arrays"]["trajectories"], serial["trajectories"])
    np.testing.assert_array_equal(written["arrays"]["times"], serial["times"])


def test_navier_stokes_resume_after_kill_minus_9_equals_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed.h5"
    params = [item for key, value in SMALL["navier_stokes"].items() for item in ("--param", f"{key}={value}")]
    command = [sys.executable, "-m", "oplearn.cli", "generate", "navier_stokes", "--n", "400", "--resolution", "16",
               "--seed", "2", "--batch", "4", "--workers", "1", "--out", str(out), *params]
    kill_minus_9_halfway(command, out, total=400)
    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    straight = generate("navier_stokes", 400, 16, seed=2, params=SMALL["navier_stokes"], batch=4, workers=2,
                        progress=False)
    np.testing.assert_array_equal(read_dataset(out)["arrays"]["trajectories"], straight["trajectories"])


def test_non_physical_parameters_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="viscosity"):
        generate("navier_stokes", 2, 16, params={"viscosity": -1e-3}, out=tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="resolution"):
        generate("burgers", 2, 48, params={"solver_resolution": 64}, out=tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="--n"):
        generate("heat", 0, 16, out=tmp_path / "x.h5")
    assert not list(tmp_path.iterdir())
