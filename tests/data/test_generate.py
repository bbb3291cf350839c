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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 64:
        time.sleep(0.2)
        try:
            with h5py.File(partial_path(out), "r", locking=False) as handle:
                done = int(handle.attrs["n_done"])
        except (OSError, KeyError):
            continue
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < done < 400, "the run was not caught halfway"
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
