"""Tests for oplearn.data.formats: neuraloperator .pt files, suffix dispatch and conversion.

FNO .mat and PDEBench readers are tested in the second half of this file, on small files
built in each layout with distinct axis sizes and values that encode their indices.
"""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from oplearn.data.formats import convert, load_arrays, read_neuraloperator
from oplearn.data.matlab import read_fno_mat
from oplearn.data.pdebench import read_pdebench
from oplearn.data.store import partial_path, read_dataset
from oplearn.data.writer import DatasetWriter
from oplearn.errors import ConfigError, DataError

# The shared data sits beside the repository checkout (CI may check it out elsewhere).
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "neuraloperator"


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


# -- FNO .mat files ----------------------------------------------------------------------

def indexed(*shape, offset=0.0) -> np.ndarray:
    """float64 array whose value spells its index in decimal digits (all sizes < 10), plus offset.

    A transposed or shifted axis then changes the values, so equality checks catch it.
    """
    digits = np.indices(shape, dtype=np.float64)
    return offset + sum(d * 10.0 ** (len(shape) - 1 - k) for k, d in enumerate(digits))


def save_mat(path: Path, variables: dict, version: str) -> Path:
    """Write ``variables`` as MATLAB v5 (``"5"``, ``"5z"`` compressed) or v7.3 (HDF5, column-major)."""
    if version.startswith("5"):
        scipy.io.savemat(path, variables, do_compression=version == "5z")
        return path
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_group("#refs#")  # MATLAB's store for cell arrays; must be ignored
        for name, value in variables.items():
            value = np.asarray(value)
            dataset = f.create_dataset(name, data=value.T)  # MATLAB writes every axis reversed
            dataset.attrs["MATLAB_class"] = np.bytes_("double" if value.dtype.kind == "f" else "logical")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as stream:
        stream.write(header.ljust(116) + bytes(8) + b"\x00\x02IM")
    return path


def one_line_error(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("version", ["5", "5z", "7.3"])
def test_fno_darcy(tmp_path, version):
    coeff, sol = indexed(3, 5, 7), indexed(3, 5, 7, offset=0.5)
    path = save_mat(tmp_path / "darcy.mat", {"coeff": coeff, "sol": sol, "Kcoeff": -coeff}, version)
    data = load_arrays(path)
    x, y = data["arrays"]["inputs"], data["arrays"]["outputs"]
    assert x.shape == (3, 1, 5, 7) and y.shape == (3, 1, 5, 7) and x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], coeff)
    np.testing.assert_array_equal(y[:, 0], sol)
    assert data["attrs"]["format"] == "fno-mat" and data["attrs"]["mat_version"] == version.rstrip("z")
    assert data["attrs"]["keys"] == {"inputs": "coeff", "outputs": "sol"}


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_fno_burgers(tmp_path, version):
    a, u = indexed(4, 6), indexed(4, 6, offset=0.25)
    data = read_fno_mat(save_mat(tmp_path / "burgers.mat", {"a": a, "u": u}, version))
    assert data["arrays"]["inputs"].shape == (4, 1, 6)
    np.testing.assert_array_equal(data["arrays"]["inputs"][:, 0], a)
    np.testing.assert_array_equal(data["arrays"]["outputs"][:, 0], u)


@pytest.mark.parametrize("version", ["5", "7.3"])
@pytest.mark.parametrize("with_t", [True, False])
def test_fno_navier_stokes(tmp_path, version, with_t):
    a, u = indexed(3, 5, 7), indexed(3, 5, 7, 4, offset=0.5)
    variables = {"a": a, "u": u, **({"t": np.array([[0.25, 0.5, 0.75, 1.0]])} if with_t else {})}
    data = load_arrays(save_mat(tmp_path / "ns.mat", variables, version))
    trajectories, times = data["arrays"]["trajectories"], data["arrays"]["times"]
    assert trajectories.shape == (3, 5, 1, 5, 7) and trajectories.dtype == np.float32
    np.testing.assert_array_equal(trajectories[:, 0, 0], a)  # the initial vorticity at t = 0
    for step in range(4):
        np.testing.assert_array_equal(trajectories[:, step + 1, 0], u[..., step])
    assert times.dtype == np.float64
    np.testing.assert_array_equal(times, [0, 0.25, 0.5, 0.75, 1.0] if with_t else [0, 1, 2, 3, 4])
    assert data["attrs"]["keys"] == {"initial": "a", "trajectory": "u", "times": "t" if with_t else None}


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_fno_explicit_keys(tmp_path, version):
    coeff = indexed(3, 5, 7)
    path = save_mat(tmp_path / "d.mat", {"coeff": coeff, "sol": coeff + 1, "Kcoeff": -coeff}, version)
    data = read_fno_mat(path, input_key="Kcoeff")  # output_key defaults to the layout's 'sol'
    np.testing.assert_array_equal(data["arrays"]["inputs"][:, 0], -coeff)
    np.testing.assert_array_equal(data["arrays"]["outputs"][:, 0], coeff + 1)
    other = save_mat(tmp_path / "o.mat", {"x1": indexed(3, 5), "y1": indexed(3, 5, offset=1)}, version)
    with pytest.raises(DataError) as info:
        read_fno_mat(other)
    message = one_line_error(info)
    assert "x1: (3, 5)" in message and "y1: (3, 5)" in message
    assert "understood: Darcy 'coeff'" in message and "Navier-Stokes" in message and "input_key" in message
    data = load_arrays(other, input_key="x1", output_key="y1")
    np.testing.assert_array_equal(data["arrays"]["outputs"][:, 0], indexed(3, 5, offset=1))
    with pytest.raises(DataError, match=r"has no variable 'nope' \(found \{x1: \(3, 5\)"):
        read_fno_mat(other, input_key="nope", output_key="y1")


@pytest.mark.parametrize("variables, match", [
    ({"a": indexed(3, 5), "u": indexed(3, 6)}, r"'a' \(3, 5\) and 'u' \(3, 6\) fit no known layout"),
    ({"coeff": indexed(3, 5), "sol": np.full((3, 5), np.nan)}, "'sol' contains NaN"),
    ({"coeff": indexed(3, 5), "sol": np.full((3, 5), 1e300)}, "'sol' contains NaN or Inf"),
    ({"a": indexed(3, 5), "u": indexed(3, 5, 4), "t": np.ones((1, 3))}, "'t' should hold the 4 times"),
    ({"a": indexed(3, 5), "u": indexed(3, 5, 4), "t": np.array([[1.0, 2, 2, 3]])}, "increasing"),
    ({"a": indexed(3, 5) * 1j, "u": indexed(3, 5)}, "'a' has dtype complex"),
])
def test_fno_bad_contents(tmp_path, variables, match):
    path = save_mat(tmp_path / "bad.mat", variables, "5")
    with pytest.raises(DataError, match=match) as info:
        read_fno_mat(path)
    one_line_error(info)


@pytest.mark.parametrize("version", ["5", "5z", "7.3"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_fno_truncated(tmp_path, version, keep):
    path = save_mat(tmp_path / "d.mat", {"coeff": indexed(6, 9, 9), "sol": indexed(6, 9, 9, offset=1)},
                    version)
    content = path.read_bytes()
    path.write_bytes(content[:int(len(content) * keep)])
    with pytest.raises(DataError, match="damaged or truncated|truncated or corrupt|not a readable") as info:
        load_arrays(path)
    one_line_error(info)


def test_fno_garbage_and_missing(tmp_path):
    (tmp_path / "junk.mat").write_bytes(b"not a MATLAB file at all " * 20)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        load_arrays(tmp_path / "junk.mat")
    with pytest.raises(DataError, match="does not exist"):
        load_arrays(tmp_path / "missing.mat")


# -- PDEBench HDF5 files -----------------------------------------------------------------

def write_h5(path: Path, datasets: dict) -> Path:
    """Write ``{"a/b": array}`` into an HDF5 file (groups made as needed)."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


@pytest.mark.parametrize("n_times", [5, 4])  # PDEBench stores T + 1 times for T snapshots
def test_pdebench_tensor(tmp_path, n_times):
    tensor, t = indexed(3, 4, 6), np.linspace(0.0, 2.0, n_times)
    path = write_h5(tmp_path / "1D_Advection.hdf5",
                    {"tensor": tensor, "x-coordinate": np.linspace(0, 1, 6), "t-coordinate": t})
    data = load_arrays(path)
    assert data["arrays"]["trajectories"].shape == (3, 4, 1, 6)
    np.testing.assert_array_equal(data["arrays"]["trajectories"][:, :, 0], tensor)
    np.testing.assert_array_equal(data["arrays"]["times"], t[:4])
    assert data["attrs"]["format"] == "pdebench-1d" and data["arrays"]["times"].dtype == np.float64


def per_sample_groups(n=3, shape=(4, 5, 6, 2)) -> dict:
    datasets = {}
    for sample in (2, 0, 1)[:n]:
        datasets[f"{sample:04d}/data"] = indexed(*shape, offset=10000.0 * sample)  # (T, X, Y, C)
        datasets[f"{sample:04d}/grid/x"] = np.linspace(0, 1, shape[1])
        datasets[f"{sample:04d}/grid/t"] = np.linspace(0, 0.3, shape[0])
    return datasets


def test_pdebench_per_sample_groups(tmp_path):
    data = load_arrays(write_h5(tmp_path / "2D_diff-react.h5", per_sample_groups()))
    trajectories = data["arrays"]["trajectories"]
    assert trajectories.shape == (3, 4, 2, 5, 6)  # (N, T, C, X, Y)
    for sample in range(3):
        stored = indexed(4, 5, 6, 2, offset=10000.0 * sample)
        np.testing.assert_array_equal(trajectories[sample], np.moveaxis(stored, -1, 1))
    assert trajectories[2, 3, 1, 4, 5] == 20000 + 3451  # sample 2, t 3, channel 1, x 4, y 5
    np.testing.assert_allclose(data["arrays"]["times"], np.linspace(0, 0.3, 4))
    assert data["attrs"]["format"] == "pdebench-2d"


@pytest.mark.parametrize("grid, fields", [
    ((4, 5), ("density", "pressure", "Vx", "Vy")),
    ((6,), ("density", "pressure", "Vx")),
])
def test_pdebench_cfd(tmp_path, grid, fields):
    shape = (2, 3, *grid)
    datasets = {name: indexed(*shape, offset=1e5 * c) for c, name in enumerate(fields)}
    datasets["t-coordinate"] = np.array([0.0, 0.1, 0.2, 0.3])
    data = load_arrays(write_h5(tmp_path / "CFD.hdf5", dict(reversed(list(datasets.items())))))
    trajectories = data["arrays"]["trajectories"]
    assert trajectories.shape == (2, 3, len(fields), *grid)
    for channel in range(len(fields)):
        np.testing.assert_array_equal(trajectories[:, :, channel], indexed(*shape, offset=1e5 * channel))
    np.testing.assert_array_equal(data["arrays"]["times"], [0.0, 0.1, 0.2])
    assert data["attrs"]["channels"] == list(fields)
    assert data["attrs"]["format"] == f"pdebench-cfd-{len(grid)}d"


def test_pdebench_darcy(tmp_path):
    nu, tensor = indexed(3, 5, 6), indexed(3, 1, 5, 6, offset=0.5)
    data = read_pdebench(write_h5(tmp_path / "2D_DarcyFlow.hdf5", {
        "nu": nu, "tensor": tensor, "x-coordinate": np.arange(5.0), "y-coordinate": np.arange(6.0)}))
    np.testing.assert_array_equal(data["arrays"]["inputs"], nu[:, None])
    np.testing.assert_array_equal(data["arrays"]["outputs"], tensor)
    assert data["attrs"]["format"] == "pdebench-darcy"


@pytest.mark.parametrize("datasets, match", [
    ({"foo": np.zeros((3, 4)), "bar/baz": np.ones(2)}, r"holds \{bar/, foo: \(3, 4\)\} in no layout .*"
                                                       r"understood: PDEBench 'tensor'"),
    ({"density": np.zeros((2, 3, 4, 5)), "pressure": np.zeros((2, 3, 4, 5)), "Vx": np.zeros((2, 3, 4, 5))},
     "CFD fields .* expected density, pressure, Vx, Vy"),
    ({**per_sample_groups(2), "0000/data": np.zeros((4, 5, 7, 2))}, "all samples must share one shape"),
    ({"tensor": np.zeros((3, 4, 6)), "t-coordinate": np.arange(7.0)}, "7 times for 4 snapshots"),
    ({"tensor": np.full((3, 4, 6), np.inf)}, "'tensor' contains NaN or Inf"),
    ({"nu": np.zeros((3, 5, 6)), "tensor": np.zeros((3, 1, 6, 5))}, "Darcy 'nu' .* do not match"),
])
def test_pdebench_bad_contents(tmp_path, datasets, match):
    path = write_h5(tmp_path / "bad.h5", datasets)
    with pytest.raises(DataError, match=match) as info:
        load_arrays(path)
    one_line_error(info)


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.95])
def test_hdf5_truncated_and_garbage(tmp_path, keep):
    path = write_h5(tmp_path / "t.h5", {"tensor": indexed(4, 8, 9), "t-coordinate": np.arange(9.0)})
    content = path.read_bytes()
    path.write_bytes(content[:int(len(content) * keep)])
    with pytest.raises(DataError, match="damaged or truncated|truncated or corrupt") as info:
        load_arrays(path)
    one_line_error(info)


@pytest.mark.parametrize("suffix, start, stop", [  # parts of the metadata written over with 0xff
    (".h5", 0.05, 0.35), (".h5", 0.35, 0.65), (".h5", 0.65, 0.95), (".mat", 0.0, 1.0)])
def test_hdf5_damaged_metadata(tmp_path, suffix, start, stop):
    variables = {"tensor": indexed(4, 8, 9), "t-coordinate": np.arange(9.0)}
    path = (write_h5(tmp_path / "c.h5", variables) if suffix == ".h5"
            else save_mat(tmp_path / "c.mat", {"a": indexed(4, 8), "u": indexed(4, 8, 9)}, "7.3"))
    with h5py.File(path, "r") as f:  # the metadata lies between the superblock and the first data
        first_data = min(f[name].id.get_offset() for name in f if isinstance(f[name], h5py.Dataset))
    content = bytearray(path.read_bytes())
    base = 512 if suffix == ".mat" else 0
    lo, hi = (base + 96 + int(fraction * (first_data - base - 96)) for fraction in (start, stop))
    content[lo:hi] = b"\xff" * (hi - lo)
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="damaged or truncated|truncated or corrupt") as info:
        load_arrays(path)
    one_line_error(info)


# -- conversion to oplearn HDF5 ------------------------------------------------------------

def fno_darcy_v5(tmp_path):
    coeff = indexed(3, 5, 7)
    return save_mat(tmp_path / "d.mat", {"coeff": coeff, "sol": coeff + 1, "Kc": coeff}, "5"), {}, "fno-mat"


def fno_ns_v73(tmp_path):
    variables = {"w0": indexed(2, 5, 7), "w": indexed(2, 5, 7, 3, offset=0.5), "t": np.array([[1.0, 2, 3]])}
    return save_mat(tmp_path / "ns.mat", variables, "7.3"), {"input_key": "w0", "output_key": "w"}, "fno-mat"


def pdebench_1d(tmp_path):
    return write_h5(tmp_path / "b.hdf5", {"tensor": indexed(3, 4, 6), "t-coordinate": np.arange(5.0)}), \
        {}, "pdebench-1d"


def pdebench_groups(tmp_path):
    return write_h5(tmp_path / "g.h5", per_sample_groups()), {}, "pdebench-2d"


def pdebench_darcy(tmp_path):
    return write_h5(tmp_path / "dd.h5", {"nu": indexed(3, 5, 6), "tensor": indexed(3, 1, 5, 6)}), \
        {}, "pdebench-darcy"


def neuraloperator_pt(tmp_path):
    torch.save({"x": torch.arange(60.0).reshape(3, 4, 5), "y": -torch.arange(60.0).reshape(3, 4, 5),
                "visc": torch.tensor(0.01)}, tmp_path / "n.pt")
    return tmp_path / "n.pt", {}, "neuraloperator"


def oplearn_h5(tmp_path):
    with DatasetWriter(tmp_path / "o.h5", pde="darcy", params={"alpha": 2.0}, seed=7, n_samples=2,
                       shapes={"trajectories": (3, 1, 4)}, extra={"times": np.arange(3.0)}) as writer:
        writer.append({"trajectories": indexed(2, 3, 1, 4)})
    return tmp_path / "o.h5", {}, "darcy"


@pytest.mark.parametrize("build", [fno_darcy_v5, fno_ns_v73, pdebench_1d, pdebench_groups, pdebench_darcy,
                                   neuraloperator_pt, oplearn_h5])
def test_convert_round_trip(tmp_path, build):
    source, keys, pde = build(tmp_path)
    out = convert(source, tmp_path / "out.h5", **keys)
    assert out == tmp_path / "out.h5" and not partial_path(out).exists()
    expected, written = load_arrays(source, **keys), read_dataset(out)
    assert set(written["arrays"]) == set(expected["arrays"])
    for name, array in expected["arrays"].items():
        assert written["arrays"][name].dtype == array.dtype
        np.testing.assert_array_equal(written["arrays"][name], array)
    attrs = written["attrs"]
    assert attrs["pde"] == pde and attrs["complete"] and attrs["params"]["source"] == source.name
    if build is oplearn_h5:  # converting an oplearn file keeps its provenance
        assert attrs["seed"] == 7 and attrs["params"]["alpha"] == 2.0
    else:
        assert attrs["seed"] == 0 and attrs["params"].get("keys") == expected["attrs"].get("keys")
    if build is fno_ns_v73:
        assert attrs["params"]["keys"] == {"initial": "w0", "trajectory": "w", "times": "t"}
        np.testing.assert_array_equal(written["arrays"]["times"], [0, 1, 2, 3])
    if build is neuraloperator_pt:
        assert attrs["params"]["viscosity"] == pytest.approx(0.01)


def test_convert_refuses_to_overwrite(tmp_path):
    source, _, _ = pdebench_darcy(tmp_path)
    out = convert(source, tmp_path / "out.h5")
    before = out.read_bytes()
    with pytest.raises(DataError, match="out.h5 exists; pass --overwrite") as info:
        convert(source, out)
    one_line_error(info)
    assert out.read_bytes() == before
    other, _, _ = pdebench_1d(tmp_path)
    convert(other, out, overwrite=True)
    assert read_dataset(out)["attrs"]["pde"] == "pdebench-1d"


def test_convert_failure_leaves_no_complete_file(tmp_path, monkeypatch):
    source, _, _ = pdebench_darcy(tmp_path)
    old = convert(source, tmp_path / "old.h5")
    old_bytes = old.read_bytes()

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetWriter, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(source, tmp_path / "new.h5")
    assert not (tmp_path / "new.h5").exists() and not partial_path(tmp_path / "new.h5").exists()
    with pytest.raises(KeyboardInterrupt):
        convert(pdebench_1d(tmp_path)[0], old, overwrite=True)
    assert old.read_bytes() == old_bytes and not partial_path(old).exists()
    monkeypatch.undo()
    bad = write_h5(tmp_path / "nan.h5", {"tensor": np.full((2, 3, 4), np.nan)})
    with pytest.raises(DataError, match="contains NaN"):
        convert(bad, tmp_path / "nan_out.h5")
    assert not (tmp_path / "nan_out.h5").exists() and not partial_path(tmp_path / "nan_out.h5").exists()
    partial_path(tmp_path / "stale.h5").write_bytes(b"left by a killed run")
    with pytest.raises(DataError, match="left from an interrupted run; delete it or pass --overwrite"):
        convert(source, tmp_path / "stale.h5")
    convert(source, tmp_path / "stale.h5", overwrite=True)
    assert read_dataset(tmp_path / "stale.h5")["attrs"]["complete"]


def test_convert_bad_arguments(tmp_path):
    source, _, _ = neuraloperator_pt(tmp_path)
    with pytest.raises(ConfigError, match="name the destination 'out.h5'"):
        convert(source, tmp_path / "out.npz")
    with pytest.raises(ConfigError, match="input_key does not apply to n.pt"):
        convert(source, tmp_path / "out.h5", input_key="x")
    mat, _, _ = fno_darcy_v5(tmp_path)
    with pytest.raises(ConfigError, match="key choice inputs does not apply"):
        convert(mat, tmp_path / "out.h5", inputs="coeff")
    assert not (tmp_path / "out.h5").exists()


def test_convert_real_neuraloperator_darcy(tmp_path):
    path = shared_file("darcy_test_16.pt")
    out = convert(path, tmp_path / "darcy16.h5")
    written, expected = read_dataset(out), load_arrays(path)
    assert written["arrays"]["inputs"].shape == (50, 1, 16, 16)
    for name in ("inputs", "outputs"):
        np.testing.assert_array_equal(written["arrays"][name], expected["arrays"][name])
    assert written["attrs"]["pde"] == "neuraloperator"
    assert written["attrs"]["params"] == {"source": "darcy_test_16.pt"}
