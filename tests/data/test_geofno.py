"""Geo-FNO benchmark layouts -> format-v2 files: tiny files with the loaders' exact shapes, dtypes and axis order.

Every value encodes where it sits in the source array, so a value read back at the wrong point fails.
"""

import json

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from helpers import assert_user_error, run_cli
from oplearn.data.formats import convert, detect_format
from oplearn.data.geofno import quad_cells
from oplearn.data.ragged import RaggedReader
from oplearn.data.store import partial_path
from oplearn.errors import DataError

N, POINTS, RADII = 6, 30, 42  # elasticity: 6 samples of 30 points (972 in the real files), 42 radius values
H, W = 9, 4  # airfoil / pipe index grid (221 x 51 and 129 x 129 in the real files)


def write_elasticity(folder, with_radius=True):
    """sigma (P, N), XY (P, 2, N), rr (42, N): sample last, as Geo-FNO saved them (float64)."""
    folder.mkdir(exist_ok=True)
    p, n = np.meshgrid(np.arange(POINTS), np.arange(N), indexing="ij")
    sigma = 1000.0 * n + p
    xy = np.stack([np.cos(p + 0.1 * n), np.sin(p + 0.1 * n)], axis=1) * (0.3 + 0.01 * p[:, None])
    np.save(folder / "Random_UnitCell_sigma_10.npy", sigma)
    np.save(folder / "Random_UnitCell_XY_10.npy", xy)
    radius = 0.2 + 0.001 * np.arange(RADII)[:, None] + 0.01 * np.arange(N)[None]
    if with_radius:
        np.save(folder / "Random_UnitCell_rr_10.npy", radius)
    return sigma, xy, radius


def write_structured(folder, stem, channels):
    """X, Y (N, H, W) and Q (N, channels, H, W) float64 of a smooth curvilinear mesh."""
    folder.mkdir(exist_ok=True)
    n, i, j = np.meshgrid(np.arange(N), np.arange(H), np.arange(W), indexing="ij")
    x = (1 + j) * np.cos(np.pi * i / (H - 1)) + 0.05 * n
    y = (1 + j) * np.sin(np.pi * i / (H - 1))
    q = np.stack([10000.0 * c + 100.0 * n + 10.0 * i + j for c in range(channels)], axis=1)
    for name, array in (("X", x), ("Y", y), ("Q", q)):
        np.save(folder / f"{stem}_{name}.npy", array)
    return x, y, q


def test_elasticity_with_radius(tmp_path):
    sigma, xy, radius = write_elasticity(tmp_path / "elasticity")
    assert detect_format(tmp_path / "elasticity") == "geofno-elasticity"
    reader = RaggedReader(convert(tmp_path / "elasticity", tmp_path / "elasticity.h5"))
    assert reader.geometry == "points" and len(reader) == N and reader.channels == {"inputs": 2 + RADII, "outputs": 1}
    sample = reader.sample(3)
    assert sample["points"].shape == (POINTS, 2)
    np.testing.assert_array_equal(sample["points"][17], xy[17, :, 3])  # float64 coordinates kept exactly
    assert sample["outputs"][17, 0] == sigma[17, 3] == 3017.0
    np.testing.assert_array_equal(sample["inputs"][17], np.concatenate([xy[17, :, 3], radius[:, 3]]).astype(np.float32))
    np.testing.assert_array_equal(sample["inputs"][5, 2:], sample["inputs"][29, 2:])  # rr is the same at every point
    assert reader.attrs["params"]["inputs"].startswith("x, y, rr[42]")


def test_elasticity_without_radius_from_one_of_its_files(tmp_path):
    sigma, xy, _ = write_elasticity(tmp_path / "elasticity", with_radius=False)
    reader = RaggedReader(convert(tmp_path / "elasticity" / "Random_UnitCell_sigma_10.npy", tmp_path / "e.h5"))
    assert reader.channels == {"inputs": 2, "outputs": 1}
    np.testing.assert_array_equal(reader.sample(4)["inputs"], xy[:, :, 4].astype(np.float32))
    np.testing.assert_array_equal(reader.sample(4)["outputs"][:, 0], sigma[:, 4])


@pytest.mark.parametrize("layout, stem, channels, taken", [("geofno-airfoil", "NACA_Cylinder", 5, 4),
                                                           ("geofno-pipe", "Pipe", 3, 0)])
def test_structured_meshes_become_quad_meshes(tmp_path, layout, stem, channels, taken):
    x, y, q = write_structured(tmp_path / "data", stem, channels)
    assert detect_format(tmp_path / "data") == layout == detect_format(tmp_path / "data" / f"{stem}_Q.npy")
    reader = RaggedReader(convert(tmp_path / "data", tmp_path / "out.h5"))
    assert reader.geometry == "mesh" and reader.cell_type == "quad" and len(reader) == N
    sample = reader.sample(3)
    i, j = divmod(17, W)  # point 17 is (i, j) of the row-major (H, W) grid, as the loaders flatten it
    np.testing.assert_array_equal(sample["points"][17], [x[3, i, j], y[3, i, j]])
    assert sample["outputs"][17, 0] == q[3, taken, i, j] == 10000.0 * taken + 300 + 10 * i + j
    np.testing.assert_array_equal(sample["inputs"], sample["points"].astype(np.float32))  # the model sees (x, y)
    assert sample["cells"].shape == ((H - 1) * (W - 1), 4)
    np.testing.assert_array_equal(sample["cells"], quad_cells(H, W))
    corners = [divmod(int(k), W) for k in sample["cells"][5]]  # a cell joins four index neighbours in order
    assert corners == [(1, 2), (2, 2), (2, 3), (1, 3)]


def save_plasticity(path, profile, output, version):
    if version == "5":
        scipy.io.savemat(path, {"input": profile, "output": output})
    else:  # MATLAB v7.3 is HDF5 with every axis reversed
        with h5py.File(path, "w") as f:
            f["input"], f["output"] = profile.T, output.T


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_plasticity_mat_on_its_reference_grid(tmp_path, version):
    s1, s2, steps = 7, 5, 3
    n, i, j, t, c = np.meshgrid(*map(np.arange, (N, s1, s2, steps, 4)), indexing="ij")
    output = 1e4 * n + 1e3 * i + 100.0 * j + 10.0 * t + c
    profile = 10.0 * np.arange(N)[:, None] + np.arange(s1)[None]
    path = tmp_path / "plas_N6_T3.mat"
    save_plasticity(path, profile, output, version)
    assert detect_format(path) == "geofno-plasticity"
    reader = RaggedReader(convert(path, tmp_path / "plas.h5"))
    assert reader.cell_type == "quad" and reader.channels == {"inputs": 1, "outputs": steps * 4}
    sample = reader.sample(3)
    row, column = divmod(17, s2)
    np.testing.assert_array_equal(sample["points"][17], [row / (s1 - 1), column / (s2 - 1)])
    assert sample["inputs"][17, 0] == profile[3, row] == 30 + row
    for step in range(steps):
        for value in range(4):
            assert sample["outputs"][17, 4 * step + value] == output[3, row, column, step, value]
    np.testing.assert_array_equal(sample["cells"], quad_cells(s1, s2))


def test_bad_geofno_sources_are_one_line_errors_leaving_no_file(tmp_path, capsys):
    out = tmp_path / "out.h5"
    x, y, q = write_structured(tmp_path / "airfoil", "NACA_Cylinder", 4)
    assert_user_error(capsys, r"NACA_Cylinder_Q.npy has 4 channels, but the geofno-airfoil layout takes channel 4 "
                      r"\(Mach number\); expected at least 5", "convert", tmp_path / "airfoil", out)
    np.save(tmp_path / "airfoil" / "NACA_Cylinder_Q.npy", np.zeros((N, 5, H, W + 1)))
    assert_user_error(capsys, rf"NACA_Cylinder_Q.npy has shape \({N}, 5, {H}, {W + 1}\), expected "
                      rf"\({N}, channels, {H}, {W}\)", "convert", tmp_path / "airfoil", out)
    (tmp_path / "airfoil" / "NACA_Cylinder_Y.npy").unlink()
    assert_user_error(capsys, "airfoil lacks NACA_Cylinder_Y.npy; the layout needs NACA_Cylinder_X.npy, "
                      "NACA_Cylinder_Y.npy, NACA_Cylinder_Q.npy", "convert", tmp_path / "airfoil", out)
    sigma, xy, _ = write_elasticity(tmp_path / "elasticity")
    np.save(tmp_path / "elasticity" / "Random_UnitCell_XY_10.npy", xy[:, :, :-1])
    assert_user_error(capsys, r"Random_UnitCell_XY_10.npy has shape \(30, 2, 5\), expected \(30, 2, 6\)",
                      "convert", tmp_path / "elasticity", out)
    assert_user_error(capsys, "geofno-elasticity has fixed inputs and outputs; drop --input-key",
                      "convert", tmp_path / "elasticity", out, "--input-key", "a")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    assert_user_error(capsys, "cannot tell the format of .*other.*name it with --format, one of: oplearn .* meshio .* "
                      "geofno-plasticity", "convert", tmp_path / "other", out)
    assert_user_error(capsys, "unknown format 'geo'; use one of: oplearn", "convert", tmp_path / "other", out,
                      "--format", "geo")
    assert not out.exists() and not partial_path(out).exists()
    # a bad value met while writing (sample 4) removes the partial file; an old destination is kept
    write_structured(tmp_path / "airfoil2", "NACA_Cylinder", 5)
    old = convert(tmp_path / "airfoil2", out)
    before = old.read_bytes()
    q = np.load(tmp_path / "airfoil2" / "NACA_Cylinder_Q.npy")
    q[4, 4, 2, 1] = np.nan
    np.save(tmp_path / "airfoil2" / "NACA_Cylinder_Q.npy", q)
    with pytest.raises(DataError, match="sample 4: outputs contain NaN or Inf"):
        convert(tmp_path / "airfoil2", out, overwrite=True)
    assert out.read_bytes() == before and not partial_path(out).exists()
    (tmp_path / "airfoil2" / "NACA_Cylinder_X.npy").write_bytes(b"\x93NUMPY truncated")
    assert_user_error(capsys, "NACA_Cylinder_X.npy is not a readable .npy array", "convert", tmp_path / "airfoil2",
                      tmp_path / "new.h5")
    mat = tmp_path / "plas_bad.mat"
    scipy.io.savemat(mat, {"input": np.zeros((3, 7)), "output": np.zeros((3, 6, 5, 2, 4))})
    assert_user_error(capsys, r"'input' \(3, 7\) and 'output' \(3, 6, 5, 2, 4\) do not fit the plasticity layout",
                      "convert", mat, tmp_path / "new.h5")
    assert not (tmp_path / "new.h5").exists() and not partial_path(tmp_path / "new.h5").exists()


def test_a_converted_pipe_trains_through_the_cli(tmp_path, capsys):
    """Pipe-like data where the output is a smooth function of the coordinates: an MLP on (x, y) learns it."""
    for split, offset in (("train", 0.0), ("test", 0.02)):
        x, y, _ = write_structured(tmp_path / split, "Pipe", 1)
        x = x + offset
        np.save(tmp_path / split / "Pipe_X.npy", x)
        np.save(tmp_path / split / "Pipe_Q.npy", (np.sin(x) * y)[:, None])
        convert(tmp_path / split, tmp_path / f"{split}.h5")
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(tmp_path / "train.h5")}, "test": {"path": str(tmp_path / "test.h5")}},
              "model": {"name": "mlp", "width": 32}, "train": {"epochs": 40, "batch_size": 2, "lr": 0.01}}
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(config))
    status, _, err = run_cli(capsys, "train", tmp_path / "pipe.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.3 * metrics[0]["train_loss"]
    assert np.isfinite(metrics[-1]["test_rel_l2"]) and metrics[-1]["test_rel_l2"] < 0.15  # 0.045 measured


def test_the_format_option_overrides_the_file_name(tmp_path, capsys):
    """Names that say nothing: --format picks the reader (a Geo-FNO .mat and an FNO .mat under odd names)."""
    profile, output = np.arange(12.0).reshape(2, 6), np.arange(2 * 6 * 3 * 2 * 4, dtype=float).reshape(2, 6, 3, 2, 4)
    scipy.io.savemat(tmp_path / "die.mat", {"input": profile, "output": output})
    assert detect_format(tmp_path / "die.mat") == "fno-mat"
    assert_user_error(capsys, "no known FNO layout", "convert", tmp_path / "die.mat", tmp_path / "a.h5")
    status, out, err = run_cli(capsys, "convert", tmp_path / "die.mat", tmp_path / "a.h5",
                               "--format", "geofno-plasticity")
    assert status == 0 and "geometry:  mesh (quad cells, 2D points)" in out, err
    scipy.io.savemat(tmp_path / "plas_darcy.mat", {"coeff": np.ones((2, 5, 5)), "sol": np.zeros((2, 5, 5))})
    assert detect_format(tmp_path / "plas_darcy.mat") == "geofno-plasticity"
    status, out, err = run_cli(capsys, "convert", tmp_path / "plas_darcy.mat", tmp_path / "b.h5", "--format", "fno-mat")
    assert status == 0 and "geometry:  grid 5x5" in out, err
