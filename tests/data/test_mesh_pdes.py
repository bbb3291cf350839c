"""Mesh PDEs (darcy_domain, elasticity) through `oplearn generate`: physics checks, determinism, resume, redraws."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml
from helpers import assert_user_error, run_cli

from oplearn.data import generate
from oplearn.data.pdes import fem, get_pde
from oplearn.data.pdes.darcy_domain import DarcyDomain
from oplearn.data.ragged import RaggedReader, read_ragged
from oplearn.data.store import partial_path
from oplearn.errors import ConfigError, SolverError


def boundary_nodes(points, cells):
    """Indices of the nodes on the mesh boundary (on edges that belong to one triangle only)."""
    edges = np.sort(np.concatenate([cells[:, [0, 1]], cells[:, [1, 2]], cells[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def assert_same_samples(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("order", [1, 2])
def test_darcy_domain_sample_is_a_positive_solution_vanishing_on_the_boundary(order):
    sample = DarcyDomain(order=order).solve_sample(seed=1, index=0, resolution=12)
    points, cells, a, u = sample["points"], sample["cells"], sample["inputs"][:, 0], sample["outputs"][:, 0]
    assert sample["draw"] == 0 and points.dtype == np.float64 and cells.dtype == np.int64
    assert set(np.unique(a)) == {3.0, 12.0}
    edge = boundary_nodes(points, cells)
    radius = np.hypot(points[edge, 0] - 0.5, points[edge, 1] - 0.5)
    assert 0.35 / 5 < radius.min() and radius.max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(u[edge], 0.0)
    inside = np.setdiff1d(np.arange(len(points)), edge)
    assert u[inside].min() > 0  # f = 1 > 0: the maximum principle
    # every triangle counter-clockwise and non-degenerate; P2 splits each triangle through its midpoints
    p = points[cells]
    area = 0.5 * ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0]))
    assert area.min() > 0
    # area of the star: pi r0^2 (1 + sum_j (a_j^2 + b_j^2) / 2), the terms' coefficients at most 0.15 / j
    assert np.pi * 0.35**2 * 0.99 < area.sum() < np.pi * 0.35**2 * 1.04


@pytest.mark.parametrize("order", [1, 2])
def test_darcy_domain_on_a_disc_with_a_constant_coefficient_is_the_exact_paraboloid(order):
    """No boundary modes: the disc of radius R = 0.35; a = 2, f = 1: u = (R^2 - |x - c|^2) / (4 a)."""
    errors = []
    for resolution in (12, 24):
        sample = DarcyDomain(order=order, boundary_amplitude=0, high=2, low=2).solve_sample(0, 0, resolution)
        exact = (0.35**2 - ((sample["points"] - 0.5) ** 2).sum(1)) / 8
        errors.append(np.abs(sample["outputs"][:, 0] - exact).max() / exact.max())
    assert errors[0] < 0.02 and errors[1] < errors[0] / 3, errors  # second order (the boundary's chords)


def test_same_seed_same_meshes_whatever_the_number_of_workers(tmp_path):
    serial = generate("darcy_domain", 4, 10, seed=3, workers=1, progress=False)
    parallel = generate("darcy_domain", 4, 10, seed=3, workers=2, progress=False)
    assert_same_samples(serial, parallel)
    other = generate("darcy_domain", 4, 10, seed=4, workers=1, progress=False)
    assert not np.array_equal(serial[0]["points"][:5], other[0]["points"][:5])
    path = generate("darcy_domain", 4, 10, seed=3, workers=2, out=tmp_path / "d.h5", progress=False)
    written = read_ragged(path)
    for s, w in zip(serial, written):
        np.testing.assert_array_equal(w["points"], s["points"])
        np.testing.assert_array_equal(w["cells"], s["cells"])
        np.testing.assert_array_equal(w["outputs"], s["outputs"].astype(np.float32))
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["draws"][...], [s["draws"] for s in serial])


def test_kill_minus_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    out, total = tmp_path / "killed.h5", 160
    command = [sys.executable, "-m", "oplearn.cli", "generate", "darcy_domain", "--n", str(total), "--resolution",
               "6", "--seed", "5", "--workers", "1", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, done = time.monotonic() + 120, 0
    while time.monotonic() < deadline and done < 16:
        time.sleep(0.05)
        try:
            with h5py.File(partial_path(out), "r", locking=False) as handle:
                done = int(handle.attrs["n_done"])
        except (OSError, KeyError):
            continue
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < done < total and not out.exists(), "the run was not caught halfway"

    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    reference = generate("darcy_domain", total, 6, seed=5, out=tmp_path / "straight.h5", workers=2, progress=False)
    assert_same_samples(read_ragged(out), read_ragged(reference))
    with h5py.File(out) as resumed, h5py.File(reference) as straight:
        assert set(resumed) == set(straight)
        for name in resumed:
            np.testing.assert_array_equal(resumed[name][...], straight[name][...])
        assert resumed.attrs["complete"] and resumed.attrs["n_done"] == total


def test_a_failed_first_draw_is_retried_and_recorded(tmp_path, capsys):
    status, out, err = run_cli(capsys, "generate", "darcy_domain", "--n", "3", "--resolution", "8", "--workers", "1",
                               "--param", "failed_draws=2", "--out", tmp_path / "redrawn.h5")
    assert status == 0, err
    with h5py.File(tmp_path / "redrawn.h5") as f:
        np.testing.assert_array_equal(f["draws"][...], [2, 2, 2])
    pde = DarcyDomain()
    for i, sample in enumerate(read_ragged(tmp_path / "redrawn.h5")):
        third_draw = pde._solve_draw(np.random.default_rng([0, i, 2]), 8)  # what draw 2 of sample i is
        np.testing.assert_array_equal(sample["points"], third_draw["points"])
        np.testing.assert_array_equal(sample["outputs"], third_draw["outputs"].astype(np.float32))
        assert not np.array_equal(sample["points"], pde.solve_sample(0, i, 8)["points"])
    status, out, err = run_cli(capsys, "info", tmp_path / "redrawn.h5")
    assert status == 0 and "darcy_domain" in out and "mesh (triangle cells, 2D points)" in out and "draws" in out
    with pytest.raises(SolverError, match="sample 0 failed in all"):
        DarcyDomain(failed_draws=fem.MAX_DRAWS).solve_sample(0, 0, 8)
    assert_user_error(capsys, r"^error: elasticity: sample 0 failed in all \d+ random draws", "generate",
                      "elasticity", "--n", "2", "--resolution", "6", "--param", f"failed_draws={fem.MAX_DRAWS}",
                      "--out", tmp_path / "never.h5")
    assert not (tmp_path / "never.h5").exists() and not partial_path(tmp_path / "never.h5").exists()


def test_bad_parameters_are_one_line_errors_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "x.h5"
    for pattern, args in [
        (r"invalid parameter for darcy_domain: radius: .*greater than 0", ["--param", "radius=-0.1"]),
        (r"valid parameters: radius", ["--param", "radiuss=0.3"]),
        (r"order: Input should be 1 or 2", ["--param", "order=3"]),
        (r"resolution \(elements per unit length\) must be an integer >= 4", ["--resolution", "2"]),
    ]:
        args = ["generate", "darcy_domain", "--n", "2", "--out", out, *args]
        assert_user_error(capsys, pattern, *(args if "--resolution" in args else args + ["--resolution", "8"]))
    assert_user_error(capsys, r"elasticity: .*void stays inside the unit cell", "generate", "elasticity", "--n",
                      "2", "--resolution", "8", "--param", "radius_span=0.35", "--out", out)
    assert_user_error(capsys, r"c1: Input should be greater than 0", "generate", "elasticity", "--n", "2",
                      "--resolution", "8", "--param", "c1=-5", "--out", out)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="bulk"):
        get_pde("elasticity", bulk=float("nan"))


def test_elasticity_generates_a_mesh_file_that_trains(tmp_path, capsys):
    """An elasticity file: Geo-FNO's layout (points, von Mises per point), readable and trainable by the CLI."""
    path = generate("elasticity", 6, 6, seed=2, workers=1, out=tmp_path / "elasticity.h5", progress=False)
    test = generate("elasticity", 3, 6, seed=3, workers=1, out=tmp_path / "test.h5", progress=False)
    with RaggedReader(path) as reader:  # closed before training opens the file again
        assert reader.geometry == "mesh" and reader.cell_type == "triangle"
        assert reader.channels == {"inputs": 1, "outputs": 1}
        sample = reader.sample(0)
    assert sample["inputs"].min() >= 0 and sample["outputs"].min() >= 0
    top = np.isclose(sample["points"][:, 1], 1.0)
    assert 30 < np.median(sample["outputs"][top]) < 300  # about the applied traction, 100, away from the void
    config = {"seed": 0, "device": "cpu", "data": {"train": {"path": str(path)}, "test": {"path": str(test)}},
              "model": {"name": "mlp", "width": 16}, "train": {"epochs": 20, "batch_size": 3, "lr": 0.01}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    status, out, err = run_cli(capsys, "train", tmp_path / "run.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    error = float(out.split("relative L2 ")[1].split()[0])
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    # a pointwise MLP sees only the distance to the void, so it cannot fit the stress; it must still learn
    assert np.isfinite(error) and error < 1.0, out
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.97 * losses[0], losses
