"""Tests for oplearn.data.store: writing, crash-safe resuming, reading, describe."""

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import oplearn
from oplearn.data.store import describe, partial_path, read_dataset
from oplearn.data.writer import DatasetWriter
from oplearn.errors import DataError

SHAPES = {"inputs": (1, 6, 6), "outputs": (2, 6, 6)}
PARAMS = {"grid": 6, "alpha": 0.5, "nested": {"k": [1, 2]}}


def sample(i: int) -> dict:
    """Deterministic sample i with a leading batch axis of 1."""
    rng = np.random.default_rng(i)
    return {name: rng.standard_normal((1, *shape)).astype(np.float32)
            for name, shape in SHAPES.items()}


def batch(lo: int, hi: int) -> dict:
    parts = [sample(i) for i in range(lo, hi)]
    return {name: np.concatenate([p[name] for p in parts]) if parts
            else np.zeros((0, *shape), np.float32) for name, shape in SHAPES.items()}


def writer(path, n=10, **kw):
    args = dict(pde="darcy", params=PARAMS, seed=7, n_samples=n, shapes=SHAPES)
    args.update(kw)
    return DatasetWriter(path, **args)


def write_all(path, n=10):
    with writer(path, n) as w:
        w.append(batch(0, n))


def test_round_trip_uneven_batches(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 10) as w:
        for lo, hi in [(0, 3), (3, 4), (4, 8), (8, 8), (8, 10)]:
            w.append(batch(lo, hi))
            assert w.n_done == hi
    assert path.exists() and not partial_path(path).exists()
    data = read_dataset(path)
    want = batch(0, 10)
    for name in SHAPES:
        np.testing.assert_array_equal(data["arrays"][name], want[name])
        assert data["arrays"][name].dtype == np.float32
    a = data["attrs"]
    assert a["params"] == PARAMS and a["pde"] == "darcy" and a["seed"] == 7
    assert a["oplearn_format"] == 2 and a["oplearn_version"] == oplearn.__version__
    assert a["geometry"] == "grid" and a["grid_location"] == "nodes"
    assert a["complete"] is True and a["n_samples"] == a["n_done"] == 10
    with h5py.File(path, "r") as f:
        assert f["inputs"].chunks == (10, 1, 6, 6)  # chunked along the sample axis


def test_time_dependent_with_extra(tmp_path):
    path = tmp_path / "burgers.h5"
    times = np.linspace(0.0, 1.0, 5)
    traj = np.arange(3 * 5 * 1 * 8, dtype=np.float64).reshape(3, 5, 1, 8)
    with DatasetWriter(path, pde="burgers", params={}, seed=0, n_samples=3,
                       shapes={"trajectories": (5, 1, 8)}, extra={"times": times}) as w:
        w.append({"trajectories": traj})
    arrays = read_dataset(path)["arrays"]
    assert arrays["times"].dtype == np.float64
    np.testing.assert_array_equal(arrays["times"], times)
    np.testing.assert_array_equal(arrays["trajectories"], traj.astype(np.float32))


CHILD = textwrap.dedent("""
    import time
    import numpy as np
    from oplearn.data.writer import DatasetWriter
    shapes = {shapes!r}
    with DatasetWriter({path!r}, pde="darcy", params={params!r}, seed=7, n_samples={n},
                       shapes=shapes, resume=True) as w:
        for i in range(w.n_done, {n}):
            rng = np.random.default_rng(i)
            w.append({{k: rng.standard_normal((1, *s)).astype(np.float32)
                      for k, s in shapes.items()}})
            print(w.n_done, flush=True)
            time.sleep(0.002)
""")


def test_kill9_then_resume_equals_uninterrupted(tmp_path):
    n, kill_after = 150, 20
    path = tmp_path / "train.h5"
    script = CHILD.format(shapes=SHAPES, params=PARAMS, path=str(path), n=n)
    env = dict(os.environ)
    src = str(Path(oplearn.__file__).parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    for line in child.stdout:
        if int(line) >= kill_after:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(DataError, match="--resume"):
        read_dataset(path)

    with writer(path, n, resume=True) as w:
        done = w.n_done
        assert kill_after <= done < n  # really interrupted halfway
        for lo in range(done, n, 7):
            w.append(batch(lo, min(lo + 7, n)))
    resumed = read_dataset(path)
    reference_path = tmp_path / "reference.h5"
    write_all(reference_path, n)
    reference = read_dataset(reference_path)
    assert resumed["attrs"] == reference["attrs"]
    for name in SHAPES:
        np.testing.assert_array_equal(resumed["arrays"][name], reference["arrays"][name])


def test_partial_file_is_not_readable_but_resumable(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 5) as w:
        w.append(batch(0, 3))  # leaves the block normally with 3 of 5
    assert not path.exists()
    with pytest.raises(DataError, match="interrupted.*--resume"):
        read_dataset(path)
    with pytest.raises(DataError, match=r"incomplete \(3 of 5 samples\).*--resume"):
        read_dataset(partial_path(path))
    with pytest.raises(DataError, match="pass --resume to continue it or --overwrite"):
        writer(path, 5)
    with writer(path, 5, resume=True) as w:
        assert w.n_done == 3
        w.append(batch(3, 5))
    np.testing.assert_array_equal(read_dataset(path)["arrays"]["inputs"], batch(0, 5)["inputs"])


def test_exception_inside_with_leaves_partial(tmp_path):
    path = tmp_path / "train.h5"
    with pytest.raises(RuntimeError):
        with writer(path, 4) as w:
            w.append(batch(0, 4))
            raise RuntimeError("generator crashed")
    assert not path.exists() and partial_path(path).exists()
    with writer(path, 4, resume=True) as w:
        assert w.n_done == 4
    assert read_dataset(path)["attrs"]["complete"] is True


def test_exists_requires_overwrite(tmp_path):
    path = tmp_path / "train.h5"
    write_all(path, 4)
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        writer(path, 4)
    with pytest.raises(DataError, match="is complete: there is nothing to resume"):
        writer(path, 4, resume=True)
    with writer(path, 2, overwrite=True) as w:
        assert read_dataset(path)["attrs"]["n_samples"] == 4  # old file intact until finish
        w.append(batch(0, 2))
    assert read_dataset(path)["attrs"]["n_samples"] == 2


def test_overwrite_discards_partial(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 4) as w:
        w.append(batch(0, 2))
    with writer(path, 4, overwrite=True, seed=99) as w:
        assert w.n_done == 0
        w.append(batch(0, 4))
    assert read_dataset(path)["attrs"]["seed"] == 99


def test_resume_without_partial_starts_fresh(tmp_path):
    with writer(tmp_path / "train.h5", 4, resume=True) as w:
        assert w.n_done == 0


@pytest.mark.parametrize("change, message", [
    ({"pde": "burgers"}, "pde darcy (now: burgers)"),
    ({"params": {**PARAMS, "alpha": 0.6}}, "alpha 0.5 (now: 0.6)"),
    ({"params": {**PARAMS, "nested": {"k": [1, 3]}}}, "k [1, 2] (now: [1, 3])"),
    ({"params": {"grid": 6, "alpha": 0.5}}, "nested {'k': [1, 2]} (now: unset)"),
    ({"seed": 8}, "seed 7 (now: 8)"),
    ({"n_samples": 11}, "n_samples 10 (now: 11)"),
    ({"shapes": {"inputs": (1, 6, 6), "outputs": (1, 6, 6)}}, "outputs (2, 6, 6) (now: (1, 6, 6))"),
])
def test_resume_mismatch_names_the_setting_that_changed(tmp_path, change, message):
    path = tmp_path / "train.h5"
    with writer(path, 10) as w:
        w.append(batch(0, 2))
    with pytest.raises(DataError, match=f"cannot resume .*: it was written with {re.escape(message)};"):
        writer(path, 10, resume=True, **change)


def test_nan_append_records_nothing(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 4) as w:
        w.append(batch(0, 1))
        bad = batch(1, 3)
        bad["outputs"][1, 0, 2, 2] = np.nan
        with pytest.raises(DataError, match="NaN or Inf"):
            w.append(bad)
        assert w.n_done == 1
        w.append(batch(1, 4))
    np.testing.assert_array_equal(read_dataset(path)["arrays"]["outputs"], batch(0, 4)["outputs"])


def test_append_checks(tmp_path):
    with writer(tmp_path / "train.h5", 3) as w:
        good = batch(0, 2)
        with pytest.raises(DataError, match="expected datasets|got datasets"):
            w.append({"inputs": good["inputs"]})
        with pytest.raises(DataError, match=r"expected \(batch, 2, 6, 6\)"):
            w.append({"inputs": good["inputs"], "outputs": good["inputs"]})
        with pytest.raises(DataError, match="batch sizes differ"):
            w.append({"inputs": good["inputs"], "outputs": good["outputs"][:1]})
        with pytest.raises(DataError, match="too large for float32"):
            w.append({"inputs": good["inputs"].astype(np.float64) * 1e300, "outputs": good["outputs"]})
        w.append(good)
        with pytest.raises(DataError, match="exceed n_samples=3"):
            w.append(good)
        assert w.n_done == 2


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="is damaged or truncated .*; regenerate it"):
        read_dataset(corrupt)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not an oplearn dataset"):
        read_dataset(foreign)
    path = tmp_path / "train.h5"
    write_all(path, 3)
    with h5py.File(path, "r+") as f:
        f.attrs["oplearn_format"] = 3
    with pytest.raises(DataError, match="uses dataset format 3, but this oplearn reads formats 1 to 2"):
        read_dataset(path)
    with h5py.File(path, "r+") as f:
        f.attrs["oplearn_format"] = 2
        f["outputs"][1, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="'outputs' contains NaN or Inf"):
        read_dataset(path)


def test_describe(tmp_path):
    path = tmp_path / "train.h5"
    with writer(path, 5) as w:
        w.append(batch(0, 2))
    text = describe(path)  # falls back to the partial file
    assert "INCOMPLETE (2/5 samples" in text and "darcy" in text
    with writer(path, 5, resume=True) as w:
        w.append(batch(2, 5))
    text = describe(path)
    assert "complete:  yes (5/5 samples)" in text and "format:    oplearn v2" in text
    assert "geometry:  grid 6x6 (nodes)" in text
    assert "(5, 1, 6, 6)" in text and "(5, 2, 6, 6)" in text and "float32" in text
    assert f"min={batch(0, 5)['inputs'].min():.4g}" in text
    assert '"alpha": 0.5' in text and "seed:      7" in text
