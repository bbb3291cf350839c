"""Tests for oplearn.data.formats: neuraloperator .pt files and suffix dispatch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from oplearn.data.formats import load_arrays, read_neuraloperator
from oplearn.data.store import DatasetWriter
from oplearn.errors import DataError

SHARED = Path("/work/shared/data/neuraloperator")


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} not available (shared neuraloperator data not mounted)")
    return path


def test_real_darcy():
    path = shared_file("darcy_test_16.pt")
    raw = torch.load(path, weights_only=True)
    data = load_arrays(path)
    x, y = data["arrays"]["inputs"], data["arrays"]["outputs"]
    assert x.shape == (50, 1, 16, 16) and y.shape == (50, 1, 16, 16)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0} and 0 < x.mean() < 1
    np.testing.assert_array_equal(x[:, 0], raw["x"].numpy().astype(np.float32))
    np.testing.assert_array_equal(y[:, 0], raw["y"].numpy())
    assert data["attrs"]["format"] == "neuraloperator" and "viscosity" not in data["attrs"]


def test_real_burgers():
    path = shared_file("burgers_test_16.pt")
    raw = torch.load(path, weights_only=True)
    data = load_arrays(path)
    x, y = data["arrays"]["inputs"], data["arrays"]["outputs"]
    assert x.shape == (400, 1, 16) and y.shape == (400, 17, 16)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(y, raw["y"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(y[:, 0], x[:, 0])  # first time step is the initial condition
    assert data["attrs"]["viscosity"] == pytest.approx(float(raw["visc"].item()))


@pytest.mark.parametrize("x_shape, y_shape, want_in, want_out", [
    ((4, 8, 8), (4, 8, 8), (4, 1, 8, 8), (4, 1, 8, 8)),
    ((4, 8, 8), (4, 3, 8, 8), (4, 1, 8, 8), (4, 3, 8, 8)),
    ((4, 10), (4, 10), (4, 1, 10), (4, 1, 10)),
    ((4, 10), (4, 5, 10), (4, 1, 10), (4, 5, 10)),
])
def test_generic_rules(tmp_path, x_shape, y_shape, want_in, want_out):
    x, y = torch.randn(x_shape, dtype=torch.float64), torch.randn(y_shape)
    torch.save({"x": x, "y": y, "note": torch.zeros(1)}, tmp_path / "d.pt")
    data = read_neuraloperator(tmp_path / "d.pt")
    assert data["arrays"]["inputs"].shape == want_in
    assert data["arrays"]["outputs"].shape == want_out
    np.testing.assert_allclose(data["arrays"]["inputs"].reshape(x_shape), x.numpy(), rtol=1e-6)


@pytest.mark.parametrize("obj, match", [
    ({"a": torch.zeros(4, 8), "u": torch.zeros(4, 8)}, r"holds \{a: \(4, 8\), u: \(4, 8\)\}"),
    ({"x": torch.zeros(4, 8)}, r"holds \{x: \(4, 8\)\}.*expected a dict"),
    ({"x": torch.zeros(4, 8), "y": torch.zeros(4, 9)}, "grid of 'y' does not match"),
    ({"x": torch.zeros(4, 8), "y": torch.zeros(5, 8)}, r"y: \(5, 8\)"),
    ({"x": torch.zeros(4), "y": torch.zeros(4)}, "expected a dict"),
    (torch.zeros(4, 8), "holds a Tensor"),
    ({"x": torch.zeros(2, 3), "y": torch.zeros(2, 3), "visc": torch.ones(2)}, "'visc' should hold one"),
    ({"x": torch.full((2, 3), float("nan")), "y": torch.zeros(2, 3)}, "'x' contains NaN"),
])
def test_bad_contents(tmp_path, obj, match):
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(DataError, match=match):
        read_neuraloperator(tmp_path / "bad.pt")


class Payload:
    """Not a tensor: weights_only loading must refuse to unpickle it."""


def test_refuses_pickled_objects_and_garbage(tmp_path):
    torch.save({"x": torch.zeros(2, 3), "y": torch.zeros(2, 3), "p": Payload()}, tmp_path / "obj.pt")
    with pytest.raises(DataError, match="cannot be loaded as a plain tensor file"):
        read_neuraloperator(tmp_path / "obj.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot be loaded"):
        load_arrays(tmp_path / "junk.pt")
    with pytest.raises(DataError, match="does not exist"):
        load_arrays(tmp_path / "missing.pt")


def test_dispatch_by_suffix(tmp_path):
    for name in ("a.h5", "b.HDF5"):
        with DatasetWriter(tmp_path / name, pde="p", params={}, seed=0, n_samples=2,
                           shapes={"inputs": (1, 3), "outputs": (1, 3)}) as w:
            w.append({"inputs": np.ones((2, 1, 3)), "outputs": np.zeros((2, 1, 3))})
        data = load_arrays(tmp_path / name)
        assert data["arrays"]["inputs"].shape == (2, 1, 3) and data["attrs"]["pde"] == "p"
    (tmp_path / "c.npz").write_bytes(b"")
    with pytest.raises(DataError, match=r"unsupported file type '\.npz'; supported: \.h5"):
        load_arrays(tmp_path / "c.npz")
