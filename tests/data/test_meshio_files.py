"""meshio files (VTU, XDMF, Gmsh .msh) -> format-v2 mesh files through `oplearn convert`, then `oplearn train`."""

import json

import meshio
import numpy as np
import pytest
import yaml

from helpers import assert_user_error, run_cli
from oplearn.data.formats import convert, detect_format
from oplearn.data.ragged import RaggedReader
from oplearn.data.store import partial_path
from oplearn.errors import ConfigError, DataError


def lattice(k: int, rng, jitter: float = 0.2):
    """A jittered k x k lattice on [0, 1]^2 (float64, z = 0), its triangles, quads and bottom boundary lines."""
    x, y = np.meshgrid(np.linspace(0, 1, k), np.linspace(0, 1, k), indexing="ij")
    points = np.stack([x.ravel(), y.ravel(), np.zeros(k * k)], axis=1)
    points[:, :2] += rng.uniform(-jitter, jitter, (k * k, 2)) / k
    index = np.arange(k * k).reshape(k, k)
    a, b, c, d = index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    quads = np.stack([a, b, d, c], 1)
    lines = np.stack([index[:-1, 0], index[1:, 0]], 1)
    return points, triangles, quads, lines


def fields(points, seed):
    """a(x) = s sin(2 pi (x + phi)) (N,), b (N, 2) and u = a + a^2 / 2 (pointwise)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * (points[:, 0] + rng.uniform()))
    b = np.stack([points[:, 1], rng.normal(size=len(points))], axis=1)
    return {"a": a, "b": b, "u": a + a**2 / 2}


def write_series(folder, n: int, suffix: str = ".vtu", cells: str = "triangle", seed: int = 0):
    """n files with 25..64 points each; returns the meshes written (with their boundary lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, meshes = np.random.default_rng(seed), []
    for i in range(n):
        points, triangles, quads, lines = lattice(int(rng.integers(5, 9)), rng)
        blocks = [(cells, triangles if cells == "triangle" else quads), ("line", lines)]
        mesh = meshio.Mesh(points, blocks, point_data=fields(points, seed * 100 + i))
        mesh.write(folder / f"sample_{i:02d}{suffix}")
        meshes.append(mesh)
    return meshes


def test_a_glob_of_vtu_files_converts_with_every_value_at_its_point(tmp_path, capsys):
    meshes = write_series(tmp_path / "vtu", 5)
    out = tmp_path / "mesh.h5"
    status, stdout, err = run_cli(capsys, "convert", str(tmp_path / "vtu" / "*.vtu"), out,
                                  "--input-key", "a,b", "--output-key", "u")
    assert status == 0, err
    assert "geometry:  mesh (triangle cells, 2D points)" in stdout
    reader = RaggedReader(out)
    assert len(reader) == 5 and reader.cell_type == "triangle" and reader.dim == 2
    assert reader.channels == {"inputs": 3, "outputs": 1}
    assert reader.attrs["pde"] == "meshio" and reader.attrs["params"]["keys"] == {"inputs": ["a", "b"],
                                                                                "outputs": ["u"]}
    for i, mesh in enumerate(meshes):
        sample = reader.sample(i)
        np.testing.assert_array_equal(sample["points"], mesh.points[:, :2])  # float64 kept, z = 0 dropped
        np.testing.assert_array_equal(sample["cells"], mesh.cells_dict["triangle"])  # boundary lines left out
        expected = np.column_stack([mesh.point_data["a"], mesh.point_data["b"]]).astype(np.float32)
        np.testing.assert_array_equal(sample["inputs"], expected)
    third = reader.sample(3)
    assert third["outputs"][17, 0] == np.float32(meshes[3].point_data["u"][17])
    assert third["inputs"][17, 2] == np.float32(meshes[3].point_data["b"][17, 1])


@pytest.mark.parametrize("suffix, cells, dim", [(".xdmf", "quad", 2), (".msh", "tetra", 3)])
def test_xdmf_quads_and_gmsh_tetrahedra_convert_from_a_folder(tmp_path, suffix, cells, dim):
    folder = tmp_path / "meshes"
    folder.mkdir()
    rng = np.random.default_rng(1)
    written = []
    for i in range(3):
        if cells == "quad":
            points, _, quads, _ = lattice(4 + i, rng)
            mesh = meshio.Mesh(points, [("quad", quads)], point_data=fields(points, i))
        else:  # the unit cube cut into 6 tetrahedra around its diagonal, moved and scaled per sample
            corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
            points = corners * (1 + i) + rng.normal(size=3)
            tetra = np.array([[0, 1, 3, 7], [0, 3, 2, 7], [0, 2, 6, 7], [0, 6, 4, 7], [0, 4, 5, 7], [0, 5, 1, 7]])
            mesh = meshio.Mesh(points, [("tetra", tetra), ("triangle", tetra[:2, :3])], point_data=fields(points, i))
        path = folder / f"s{i}{suffix}"
        if suffix == ".msh":  # Gmsh stores fields of 1, 3 or 9 components: leave out the 2-component b
            del mesh.point_data["b"]
            meshio.write(path, mesh, file_format="gmsh22", binary=True)
        else:
            mesh.write(path)
        written.append(mesh)
    assert detect_format(folder) == "meshio"
    out = convert(folder, tmp_path / "out.h5", input_key="a", output_key="u")
    reader = RaggedReader(out)
    assert reader.cell_type == cells and reader.dim == dim and len(reader) == 3
    for i, mesh in enumerate(written):
        sample = reader.sample(i)
        np.testing.assert_allclose(sample["points"], mesh.points[:, :dim], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(sample["cells"], mesh.cells_dict[cells])
        np.testing.assert_array_equal(sample["outputs"][:, 0], mesh.point_data["u"].astype(np.float32))


def test_mixed_cell_types_are_one_line_naming_them(tmp_path, capsys):
    rng = np.random.default_rng(2)
    points, triangles, quads, _ = lattice(5, rng)
    meshio.Mesh(points, [("triangle", triangles[:4]), ("quad", quads[4:])], point_data=fields(points, 0)).write(
        tmp_path / "mixed.vtu")
    assert_user_error(capsys, r"mixes cell types triangle, quad; oplearn meshes have one cell type",
                      "convert", tmp_path / "mixed.vtu", tmp_path / "out.h5", "--input-key", "a", "--output-key", "u")
    assert not (tmp_path / "out.h5").exists() and not partial_path(tmp_path / "out.h5").exists()


def test_bad_sources_are_one_line_errors_that_leave_no_file(tmp_path, capsys):
    meshes = write_series(tmp_path / "vtu", 3)
    out = tmp_path / "out.h5"
    args = ["--input-key", "a", "--output-key", "u"]
    assert_user_error(capsys, r"no point data 'c' \(point data found: a \(\d+,\), b \(\d+, 2\), u \(\d+,\)\)",
                      "convert", tmp_path / "vtu", out, "--input-key", "c", "--output-key", "u")
    assert_user_error(capsys, "meshio files need --input-key", "convert", tmp_path / "vtu", out, "--output-key", "u")
    assert_user_error(capsys, "no files match .*nothing_\\*.vtu", "convert", str(tmp_path / "nothing_*.vtu"), out,
                      *args)
    assert_user_error(capsys, "missing.vtu does not exist", "convert", tmp_path / "missing.vtu", out, *args)
    # a later file that differs fails mid-way: the old destination stays as it was, no partial file is left
    old = convert(tmp_path / "vtu", out, input_key="a", output_key="u")
    before = old.read_bytes()
    wider = meshes[2]
    wider.point_data["u"] = np.stack([wider.point_data["u"]] * 2, axis=1)
    wider.write(tmp_path / "vtu" / "sample_02.vtu")
    assert_user_error(capsys, r"sample_02.vtu has triangle cells, 2-d points and 1 input / 2 output channels, but "
                      r"sample_00.vtu has .* 1 / 1; every file must match",
                      "convert", tmp_path / "vtu", out, *args, "--overwrite")
    assert out.read_bytes() == before and not partial_path(out).exists()
    (tmp_path / "vtu" / "sample_01.vtu").write_text("<VTKFile truncated")
    with pytest.raises(DataError, match="sample_01.vtu cannot be read as a mesh"):
        convert(tmp_path / "vtu", tmp_path / "other.h5", input_key="a", output_key="u")
    assert not (tmp_path / "other.h5").exists() and not partial_path(tmp_path / "other.h5").exists()
    with pytest.raises(ConfigError, match="key choice inputs does not apply to meshio files"):
        convert(tmp_path / "vtu", tmp_path / "other.h5", inputs="a")


def test_a_converted_meshio_series_trains_through_the_cli(tmp_path, capsys):
    for split, n, seed in (("train", 24, 3), ("test", 6, 4)):
        write_series(tmp_path / split, n, seed=seed)
        convert(tmp_path / split, tmp_path / f"{split}.h5", input_key="a", output_key="u")
    config = {"seed": 0, "device": "cpu",
              "data": {"train": {"path": str(tmp_path / "train.h5")}, "test": {"path": str(tmp_path / "test.h5")}},
              "model": {"name": "mlp", "width": 16}, "train": {"epochs": 12, "batch_size": 6, "lr": 0.01}}
    (tmp_path / "mesh.yaml").write_text(yaml.safe_dump(config))
    status, _, err = run_cli(capsys, "train", tmp_path / "mesh.yaml", "--out", tmp_path / "run")
    assert status == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.3 * metrics[0]["train_loss"]  # the pointwise map u = a + a^2/2 is learned
    assert np.isfinite(metrics[-1]["test_rel_l2"]) and metrics[-1]["test_rel_l2"] < 0.2  # 0.061 measured
